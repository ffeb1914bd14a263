#!/usr/bin/env node
// A foreign worker for sockshare's integration tests: no sockshare code.
//
// It takes its listening socket the systemd way (LISTEN_FDS, LISTEN_PID,
// fd 3) and serves HTTP on it: every request is answered with
// "Connection: close" and the body
// "worker=<SOCKSHARE_WORKER_ID> slot=<SOCKSHARE_SLOT> pid=<pid>
// listen_pid=<LISTEN_PID>\n" (also in an X-Worker header: the id).
// GET /sleep/<ms> waits that long before answering (a request in flight for
// drain tests); GET /exit/<code> answers, then exits with that status (a
// crash for restart tests).
//
// Node has no sd_notify: run it with -ready started or -ready delay:D.
//
// SIGTERM or SIGINT: stop accepting (server.close), let the requests in
// hand finish, exit 0.
//
// Exit status 3, with a message on stderr, when the environment does not
// hand this process a socket (LISTEN_PID is not its pid, or LISTEN_FDS is
// not a positive number).
'use strict';

const http = require('http');

const SD_LISTEN_FDS_START = 3;

function fail(msg) {
  process.stderr.write('worker.js: ' + msg + '\n');
  process.exit(3);
}

const listenPID = process.env.LISTEN_PID || '';
if (listenPID !== String(process.pid)) {
  fail(`LISTEN_PID is "${listenPID}", not this process (${process.pid}): no sockets were passed to it`);
}
const nfds = Number.parseInt(process.env.LISTEN_FDS || '', 10);
if (!(nfds >= 1)) {
  fail(`LISTEN_FDS is "${process.env.LISTEN_FDS || ''}": want a positive number of sockets`);
}

const id = process.env.SOCKSHARE_WORKER_ID || '';
const slot = process.env.SOCKSHARE_SLOT || '';
const body = `worker=${id} slot=${slot} pid=${process.pid} listen_pid=${listenPID}\n`;

let exitCode = null;

const server = http.createServer((req, res) => {
  const answer = () => {
    res.writeHead(200, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
      'X-Worker': id,
      'Connection': 'close',
    });
    res.end(body);
  };
  const path = req.url || '/';
  const sleep = path.match(/^\/sleep\/(\d+)/);
  const exit = path.match(/^\/exit\/(\d+)/);
  if (exit) {
    exitCode = Number(exit[1]);
    res.on('finish', () => process.exit(exitCode));
  }
  // Drain the request body (none for GET) before answering.
  req.resume();
  if (sleep) {
    setTimeout(answer, Number(sleep[1]));
  } else {
    answer();
  }
});
server.keepAliveTimeout = 1000;

server.on('error', (err) => {
  fail(`fd ${SD_LISTEN_FDS_START}: ${err.message}`);
});

// Only fd 3 is served: the first -listen address.
server.listen({ fd: SD_LISTEN_FDS_START });

let stopping = false;
function stop() {
  if (stopping) {
    return;
  }
  stopping = true;
  // close stops accepting and calls back once every connection has ended;
  // every response says Connection: close, so that is once the requests
  // in hand are answered. Idle keep-alive connections (a client that
  // ignored Connection: close) would hold it open: close them.
  server.close(() => process.exit(0));
  if (typeof server.closeIdleConnections === 'function') {
    server.closeIdleConnections();
  }
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
