package main

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/bench/fleetsim"
)

// series is one line of a panel: a value per fleet size.
type series struct {
	name  string
	color string
	ys    []float64 // NaN: no point
}

// panel is one small chart with a log-scaled x axis of fleet sizes.
type panel struct {
	title, unit string
	lines       []series
	yMax        float64
	limit       float64 // a dashed horizontal line, 0 for none
	limitName   string
}

// chart draws the scale table as three panels: read units per busy
// environment-second, time to refusal, and fleet-wide trips at 0.8 × the
// threshold, each against the fleet size.
func chart(jobs []*job, sizes []int) []byte {
	_, by := rows(jobs, "scale")
	med := func(f func(*job) float64) []float64 {
		out := make([]float64, len(sizes))
		for i, n := range sizes {
			var xs []float64
			for _, j := range by[strconv.Itoa(n)] {
				if v := f(j); !math.IsNaN(v) && v >= 0 {
					xs = append(xs, v)
				}
			}
			out[i] = math.NaN()
			if len(xs) > 0 {
				_, out[i], _ = fleetsim.Percentiles(xs)
			}
		}
		return out
	}
	total := func(f func(*job) float64) []float64 {
		out := make([]float64, len(sizes))
		for i, n := range sizes {
			out[i] = sum(by[strconv.Itoa(n)], f)
		}
		return out
	}
	reads := med(func(j *job) float64 { p := phase(j, "healthy"); return perBusySecond(p.ReadUnits, p) })
	hot := med(func(j *job) float64 { return 100 * j.res.PeakItemReads / 3000 })
	seen := med(func(j *job) float64 { return float64(j.res.SeenRefusal) / float64(time.Millisecond) })
	fleet := med(func(j *job) float64 {
		if j.res.FleetRefusal < 0 {
			return math.NaN()
		}
		return float64(j.res.FleetRefusal) / float64(time.Millisecond)
	})
	trips := total(func(j *job) float64 { return float64(j.res.FalseTrips(0.8*threshold + 1e-9)) })
	panels := []panel{
		{title: "Reads per busy environment-second", unit: "read units", yMax: niceMax(reads, 1), limit: 0.5, limitName: "target 0.5",
			lines: []series{{"healthy", "#1f77b4", reads}}},
		{title: "Hottest item, reads", unit: "% of 3,000 RU/s", yMax: niceMax(hot, 100), limit: 50, limitName: "50 %",
			lines: []series{{"peak second", "#9467bd", hot}}},
		{title: "Time to refusal (median of seeds)", unit: "ms", yMax: niceMax(append(append([]float64{}, seen...), fleet...), 1000), limit: 1000, limitName: "1 s",
			lines: []series{{"slowest env: failure → refused", "#d62728", seen}, {"fleet trip → every env", "#2ca02c", fleet}}},
		{title: "Fleet-wide trips at 0.8 × threshold", unit: "trips, all seeds", yMax: niceMax(trips, 1),
			lines: []series{{"false trips", "#ff7f0e", trips}}},
	}
	const w, h, pw, ph, left, top = 1000, 300, 200, 170, 50, 50
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13" font-weight="bold">make bench-fleet: environments (log scale) at 20 calls/s each, DynamoDB modelled per item</text>`+"\n", left)
	lx, hx := math.Log10(float64(sizes[0])), math.Log10(float64(sizes[len(sizes)-1]))
	if hx == lx {
		hx = lx + 1
	}
	for k, p := range panels {
		x0 := float64(left + k*(pw+50))
		y0 := float64(top + ph)
		xOf := func(n int) float64 { return x0 + (math.Log10(float64(n))-lx)/(hx-lx)*pw }
		yOf := func(v float64) float64 { return y0 - v/p.yMax*ph }
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" font-weight="bold">%s</text>`+"\n", x0, top-12, p.title)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", x0, y0, x0+pw, y0)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%d" stroke="black"/>`+"\n", x0, y0, x0, top)
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="end">%s</text>`+"\n", x0-4, top+4, trim(p.yMax))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end">0</text>`+"\n", x0-4, y0+4)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#555">%s</text>`+"\n", x0, y0+28+float64(len(p.lines))*13, p.unit)
		for _, n := range sizes {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", xOf(n), y0+14, short(n))
		}
		if p.limit > 0 && p.limit <= p.yMax {
			fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#888" stroke-dasharray="4 3"/><text x="%.0f" y="%.1f" fill="#555" text-anchor="end">%s</text>`+"\n",
				x0, yOf(p.limit), x0+pw, yOf(p.limit), x0+pw, yOf(p.limit)-3, p.limitName)
		}
		for i, s := range p.lines {
			var pts bytes.Buffer
			for j, n := range sizes {
				if math.IsNaN(s.ys[j]) {
					continue
				}
				fmt.Fprintf(&pts, "%.1f,%.1f ", xOf(n), yOf(s.ys[j]))
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", xOf(n), yOf(s.ys[j]), s.color)
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", pts.String(), s.color)
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="%s">%s</text>`+"\n", x0, y0+28+float64(i)*13, s.color, s.name)
		}
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func short(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

func trim(x float64) string { return strconv.FormatFloat(x, 'g', 4, 64) }

// niceMax is a round axis maximum above every value, at least floor.
func niceMax(ys []float64, floor float64) float64 {
	m := floor
	for _, y := range ys {
		if !math.IsNaN(y) && y > m {
			m = y
		}
	}
	p := math.Pow(10, math.Floor(math.Log10(m)))
	for _, f := range []float64{1, 2, 2.5, 5, 10} {
		if f*p >= m {
			return f * p
		}
	}
	return 10 * p
}
