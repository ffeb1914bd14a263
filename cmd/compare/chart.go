package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// writeChart draws, for every workload, each policy's per-worker share of
// the requests in its median run, one bar per worker slot, with the equal
// share as a dashed line; the x labels carry Jain's index.
func writeChart(path string, rep *report) error {
	var plots [][]*plot.Plot
	for _, wl := range rep.Config.Workloads {
		p, err := workloadPlot(rep, wl)
		if err != nil {
			return err
		}
		if p != nil {
			plots = append(plots, []*plot.Plot{p})
		}
	}
	if len(plots) == 0 {
		return fmt.Errorf("nothing to draw")
	}
	w, h := 17*vg.Centimeter, vg.Length(len(plots))*7*vg.Centimeter

	var c vg.CanvasWriterTo
	switch strings.ToLower(filepath.Ext(path)) {
	case ".png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(120))}
	default:
		c = vgsvg.New(w, h)
	}
	dc := draw.New(c)
	tiles := draw.Tiles{
		Rows: len(plots), Cols: 1,
		PadY: vg.Centimeter / 2, PadTop: vg.Centimeter / 4, PadBottom: vg.Centimeter / 4,
		PadLeft: vg.Centimeter / 4, PadRight: vg.Centimeter / 4,
	}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func workloadPlot(rep *report, workload string) (*plot.Plot, error) {
	var rs []result
	slots := 0
	for _, r := range rep.Results {
		if r.Workload != workload {
			continue
		}
		rs = append(rs, r)
		for _, w := range r.PerWorker {
			slots = max(slots, w.Slot+1)
		}
	}
	if len(rs) == 0 || slots == 0 {
		return nil, nil
	}

	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: share of requests per worker slot (the run with the median req/s of %d)", workload, rep.Config.Reps)
	p.Y.Label.Text = "% of requests"
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = false

	labels := make([]string, len(rs))
	for i, r := range rs {
		labels[i] = fmt.Sprintf("%s\njain %s\n%s req/s", r.label(), fmtFrac(r.Jain), thousands(float64(r.RPS)))
	}
	p.NominalX(labels...)

	// One bar chart per slot, side by side within each policy's group.
	barW := vg.Points(min(28, 110/float64(slots)))
	ymax := 0.0
	for s := range slots {
		vals := make(plotter.Values, len(rs))
		for i, r := range rs {
			var total, mine int64
			for _, w := range r.PerWorker {
				total += w.Requests
				if w.Slot == s {
					mine += w.Requests
				}
			}
			if total > 0 {
				vals[i] = 100 * float64(mine) / float64(total)
			}
			ymax = max(ymax, vals[i])
		}
		b, err := plotter.NewBarChart(vals, barW)
		if err != nil {
			return nil, err
		}
		b.LineStyle.Width = 0
		b.Color = plotutil.Color(s)
		b.Offset = barW * vg.Length(float64(s)-float64(slots-1)/2)
		p.Add(b)
		if slots <= 8 {
			p.Legend.Add(fmt.Sprintf("slot %d", s), b)
		}
	}

	equal := 100 / float64(slots)
	line, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: equal}, {X: float64(len(rs)) - 0.5, Y: equal}})
	if err != nil {
		return nil, err
	}
	line.LineStyle.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	line.LineStyle.Width = vg.Points(1)
	p.Add(line)
	p.Legend.Add("equal share", line)
	p.Y.Max = max(ymax*1.5, equal*1.5) // headroom for the legend
	p.X.Tick.Label.Font.Size = vg.Points(8)
	return p, nil
}
