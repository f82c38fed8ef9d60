package main

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// cdf turns sorted samples (µs) into at most 400 points of an empirical CDF, x scaled by div.
func cdf(sorted []float64, div float64) plotter.XYs {
	n := len(sorted)
	if n == 0 {
		return nil
	}
	step := max(1, n/400)
	var xy plotter.XYs
	for i := 0; i < n; i += step {
		xy = append(xy, plotter.XY{X: sorted[i] / div, Y: float64(i+1) / float64(n)})
	}
	if last := xy[len(xy)-1]; last.Y < 1 {
		xy = append(xy, plotter.XY{X: sorted[n-1] / div, Y: 1})
	}
	return xy
}

// plot draws two panels: latency CDFs of (1)–(4) on a log scale, and the revocation window (5).
func (r *Results) plot(path string) error {
	lat := plot.New()
	lat.Title.Text = "Latency CDFs (1)–(4), this machine"
	lat.X.Label.Text = "latency (µs, log scale)"
	lat.Y.Label.Text = "fraction of requests ≤ x"
	lat.X.Scale = plot.LogScale{}
	lat.X.Tick.Marker = plot.LogTicks{Prec: -1}
	lat.Y.Min, lat.Y.Max = 0, 1
	lat.Add(plotter.NewGrid())
	lat.Legend.Top, lat.Legend.Left = false, false // bottom right, in the space left by X.Max
	lat.Legend.TextStyle.Font.Size = vg.Points(9)
	series := []Dist{r.Introspect1, r.Introspect32, r.Verify, r.ExchangeColdClient, r.ExchangeColdOverhead,
		r.ExchangeWarmServer, r.Renewal, r.RenewalServer, r.KCRefresh}
	labels := []string{"(1) introspection at Keycloak, c=1", "(1) introspection at Keycloak, c=32",
		"(2) local verification, go-oidc", "(3) cold exchange, client", "(3) cold exchange overhead, server",
		"(3) warm exchange, server", fmt.Sprintf("(4) renewal over HTTP, c=%d", r.Renewal.Concurrency),
		"(4) renewal, server, c=1", fmt.Sprintf("(4) Keycloak refresh grant, c=%d", r.KCRefresh.Concurrency)}
	for i, d := range series {
		xy := cdf(d.samples, 1)
		if len(xy) == 0 {
			continue
		}
		for j := range xy { // the log scale needs x > 0
			xy[j].X = max(xy[j].X, 0.1)
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		l.Dashes = plotutil.Dashes(i / 7)
		lat.Add(l)
		lat.Legend.Add(labels[i], l)
	}

	var slowest float64
	for _, d := range series {
		slowest = max(slowest, d.MaxUs)
	}
	lat.X.Max = max(slowest, 1000) * 300 // room on the right for the legend

	rev := plot.New()
	rev.Title.Text = fmt.Sprintf("(5) Revocation window, %d sessions", r.Revocation.N)
	rev.X.Label.Text = "Keycloak logout returned → first refused renewal (ms)"
	rev.Y.Label.Text = "fraction of sessions ≤ x"
	rev.Y.Min, rev.Y.Max = 0, 1
	rev.Add(plotter.NewGrid())
	rev.Legend.Top, rev.Legend.Left = false, false
	rev.Legend.YOffs = vg.Points(40)
	if xy := cdf(r.Revocation.samples, 1000); len(xy) > 0 {
		l, err := plotter.NewLine(xy)
		if err != nil {
			return err
		}
		l.Color, l.Width = color.RGBA{R: 200, A: 255}, vg.Points(2)
		rev.Add(l)
		rev.Legend.Add("all logouts", l)
		for i, d := range r.RevocationBy {
			l, err := plotter.NewLine(cdf(d.samples, 1000))
			if err != nil {
				return err
			}
			l.Color, l.Width, l.Dashes = plotutil.Color(i+1), vg.Points(1), plotutil.Dashes(i+1)
			rev.Add(l)
			rev.Legend.Add(d.Name, l)
		}
		rev.X.Min = 0
	}

	img := vgimg.New(vg.Points(1100), vg.Points(430))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Points(12), PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(12)}
	plots := [][]*plot.Plot{{lat, rev}}
	cs := plot.Align(plots, tiles, dc)
	lat.Draw(cs[0][0])
	rev.Draw(cs[0][1])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
