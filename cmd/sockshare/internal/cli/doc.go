// Package cli parses and validates the command line of sockshare's run
// subcommand, and holds the usage text.
//
// It owns only the words the user typed: [Parse] turns the arguments after
// "sockshare run" into [Options], checking every flag it can check alone
// (ranges, durations, policy and dispatch names, the metrics address).
// Listen URLs are the exception: their syntax belongs to the package that
// turns them into sockets, so Parse keeps them as raw strings, in order, and
// [ParseListen] applies that package's parser to them with the same one-line
// error format.
//
// Every error is one line that names the flag, the value and what is wrong
// ("sockshare: -workers must be between 1 and 1024, got 0"), and matches
// [ErrUsage], so that main can print it on stderr and exit with status 2.
// -h and -help give an error matching [ErrHelp] (flag.ErrHelp), after which
// main prints [Usage] and exits with status 0. The package never prints and
// never exits.
package cli
