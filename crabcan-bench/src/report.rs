//! Summary statistics and the pieces of the three outputs: the table, the numbers of
//! `results.json` and `growth.svg`.

use std::fmt::Write as _;

use serde::{Serialize, Serializer};

/// Order statistics of one series of samples.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Stats {
    pub n: usize,
    #[serde(serialize_with = "num")]
    pub min: f64,
    #[serde(serialize_with = "num")]
    pub p10: f64,
    #[serde(serialize_with = "num")]
    pub median: f64,
    #[serde(serialize_with = "num")]
    pub p90: f64,
    #[serde(serialize_with = "num")]
    pub max: f64,
}

impl Stats {
    /// Computes the statistics; all zero for an empty series.
    pub fn of(samples: &[f64]) -> Stats {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Stats::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let at = |q: f64| v[((n - 1) as f64 * q).round() as usize];
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stats {
            n,
            min: v[0],
            p10: at(0.1),
            median,
            p90: at(0.9),
            max: v[n - 1],
        }
    }
}

/// A number for `results.json`: four decimals are more than any timing here resolves, whole
/// numbers go without a fraction, and what JSON cannot hold (NaN, infinity) is `null`.
pub fn num<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    let r = (x * 1e4).round() / 1e4;
    if !r.is_finite() {
        s.serialize_none()
    } else if r.fract() == 0.0 && r.abs() < 1e15 {
        s.serialize_i64(r as i64)
    } else {
        s.serialize_f64(r)
    }
}

/// [`num`], or `null` when absent.
pub fn opt_num<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => num(x, s),
        None => s.serialize_none(),
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One point of the bind-mount growth curve.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GrowthPoint {
    pub mounts: usize,
    pub ms: Stats,
}

/// Throughput at one level of parallelism.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Throughput {
    pub parallel: usize,
    pub containers: usize,
    pub failures: usize,
    #[serde(serialize_with = "num")]
    pub seconds: f64,
    #[serde(rename = "per_second", serialize_with = "num")]
    pub per_sec: f64,
}

/// How the gap between the floor with crabcan's cgroup work and crabcan's default run
/// splits, from the medians of the interleaved start-latency rows, in ms: the kernel work
/// crabcan's default adds on top of the cgroups (`floor+cgroups` to `floor+all`) and what
/// is crabcan's own (`floor+all` to crabcan).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FloorSplit {
    #[serde(serialize_with = "num")]
    pub floor_cgroups: f64,
    #[serde(serialize_with = "num")]
    pub floor_all: f64,
    #[serde(serialize_with = "num")]
    pub crabcan: f64,
    /// `floor_all - floor_cgroups`.
    #[serde(serialize_with = "num")]
    pub kernel_added: f64,
    /// `crabcan - floor_all`.
    #[serde(serialize_with = "num")]
    pub crabcan_own: f64,
}

impl FloorSplit {
    /// The split of the three medians.
    pub fn of(floor_cgroups: f64, floor_all: f64, crabcan: f64) -> FloorSplit {
        FloorSplit {
            floor_cgroups,
            floor_all,
            crabcan,
            kernel_added: floor_all - floor_cgroups,
            crabcan_own: crabcan - floor_all,
        }
    }
}

/// A "nice" axis maximum at or above `x` (1, 2 or 5 times a power of ten).
fn nice_ceiling(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|v| *v >= x)
        .unwrap_or(10.0 * p)
}

/// Two panels: start latency against the number of bind mounts (median with a p10–p90 band;
/// log-spaced counts at equal distances), and containers per second with 1 and 2 at a time.
pub fn growth_svg(growth: &[GrowthPoint], tput: &[Throughput], subtitle: &str) -> String {
    const W: f64 = 960.0;
    const H: f64 = 420.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="16">crabcan: start latency vs bind mounts, and throughput</text>
<text x="{}" y="40" text-anchor="middle" fill="#555">{}</text>
"##,
        W / 2.0,
        W / 2.0,
        xml(subtitle)
    );

    // Left panel: latency.
    let (x0, x1, y0, y1) = (70.0, 560.0, 360.0, 70.0);
    let ymax = nice_ceiling(growth.iter().map(|g| g.ms.p90).fold(0.0, f64::max) * 1.1);
    let ypos = |v: f64| y0 - (v / ymax) * (y0 - y1);
    let n = growth.len().max(1);
    let xpos = |i: usize| x0 + 40.0 + (x1 - x0 - 80.0) * i as f64 / (n.max(2) - 1) as f64;
    axes(&mut s, x0, x1, y0, y1, ymax, "start latency (ms)");
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">--add bind mounts</text>"#,
        (x0 + x1) / 2.0,
        y0 + 40.0
    );
    let band: Vec<String> = growth
        .iter()
        .enumerate()
        .map(|(i, g)| format!("{:.1},{:.1}", xpos(i), ypos(g.ms.p90)))
        .chain(
            growth
                .iter()
                .enumerate()
                .rev()
                .map(|(i, g)| format!("{:.1},{:.1}", xpos(i), ypos(g.ms.p10))),
        )
        .collect();
    let _ = writeln!(
        s,
        r##"<polygon points="{}" fill="#f4a26155" stroke="none"/>"##,
        band.join(" ")
    );
    let line: Vec<String> = growth
        .iter()
        .enumerate()
        .map(|(i, g)| format!("{:.1},{:.1}", xpos(i), ypos(g.ms.median)))
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#e76f51" stroke-width="2.5"/>"##,
        line.join(" ")
    );
    for (i, g) in growth.iter().enumerate() {
        let (x, y) = (xpos(i), ypos(g.ms.median));
        let _ = writeln!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="4" fill="#e76f51"/>
<text x="{x:.1}" y="{:.1}" text-anchor="middle">{:.2} ms</text>
<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            y - 10.0,
            g.ms.median,
            y0 + 18.0,
            g.mounts
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" fill="#555">line: median; band: p10–p90</text>"##,
        x0 + 10.0,
        y1 + 14.0
    );

    // Right panel: throughput.
    let (x0, x1) = (640.0, 920.0);
    let ymax = nice_ceiling(tput.iter().map(|t| t.per_sec).fold(0.0, f64::max) * 1.15);
    let ypos = |v: f64| y0 - (v / ymax) * (y0 - y1);
    axes(&mut s, x0, x1, y0, y1, ymax, "containers per second");
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">containers at a time</text>"#,
        (x0 + x1) / 2.0,
        y0 + 40.0
    );
    let slot = (x1 - x0) / tput.len().max(1) as f64;
    for (i, t) in tput.iter().enumerate() {
        let cx = x0 + slot * (i as f64 + 0.5);
        let y = ypos(t.per_sec);
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#2a9d8f"/>
<text x="{cx:.1}" y="{:.1}" text-anchor="middle">{:.0}/s</text>
<text x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            cx - slot * 0.3,
            slot * 0.6,
            y0 - y,
            y - 6.0,
            t.per_sec,
            y0 + 18.0,
            t.parallel
        );
    }
    if let Some(one) = tput.iter().find(|t| t.parallel == 1) {
        let y = ypos(one.per_sec * 1.7);
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#264653" stroke-dasharray="5,4"/>
<text x="{}" y="{:.1}" text-anchor="end" fill="#264653">target 1.7×</text>"##,
            x1 - 4.0,
            y - 5.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A grouped bar chart: one group per label of `groups`, one bar per series (name, values in
/// group order; `None` draws no bar and says "n/a").
pub fn bars_svg(
    title: &str,
    subtitle: &str,
    unit: &str,
    groups: &[&str],
    series: &[(&str, Vec<Option<f64>>)],
) -> String {
    const W: f64 = 960.0;
    const H: f64 = 420.0;
    const COLORS: [&str; 6] = [
        "#e76f51", "#2a9d8f", "#264653", "#e9c46a", "#8ab17d", "#6d597a",
    ];
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="16">{}</text>
<text x="{}" y="40" text-anchor="middle" fill="#555">{}</text>
"##,
        W / 2.0,
        xml(title),
        W / 2.0,
        xml(subtitle)
    );
    let (x0, x1, y0, y1) = (70.0, 930.0, 360.0, 70.0);
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    let ymax = nice_ceiling(top * 1.15);
    let ypos = |v: f64| y0 - (v / ymax) * (y0 - y1);
    axes(&mut s, x0, x1, y0, y1, ymax, unit);
    let slot = (x1 - x0) / groups.len().max(1) as f64;
    let bar = slot * 0.8 / series.len().max(1) as f64;
    for (g, label) in groups.iter().enumerate() {
        let gx = x0 + slot * g as f64 + slot * 0.1;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            gx + slot * 0.4,
            y0 + 18.0,
            xml(label)
        );
        for (i, (_, values)) in series.iter().enumerate() {
            let x = gx + bar * i as f64;
            let color = COLORS[i % COLORS.len()];
            match values.get(g).copied().flatten() {
                Some(v) => {
                    let y = ypos(v);
                    let _ = writeln!(
                        s,
                        r##"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{color}"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"##,
                        bar * 0.9,
                        y0 - y,
                        x + bar * 0.45,
                        y - 4.0,
                        trim_num(v)
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="#999">n/a</text>"##,
                        x + bar * 0.45,
                        y0 - 4.0
                    );
                }
            }
        }
    }
    for (i, (name, _)) in series.iter().enumerate() {
        let x = x0 + 20.0 + 130.0 * i as f64;
        let _ = writeln!(
            s,
            r##"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/>
<text x="{}" y="{}">{}</text>"##,
            y0 + 30.0,
            COLORS[i % COLORS.len()],
            x + 16.0,
            y0 + 40.0,
            xml(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn axes(s: &mut String, x0: f64, x1: f64, y0: f64, y1: f64, ymax: f64, label: &str) {
    let _ = writeln!(
        s,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>
<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>
<text transform="translate({},{}) rotate(-90)" text-anchor="middle">{}</text>"##,
        x0 - 48.0,
        (y0 + y1) / 2.0,
        xml(label)
    );
    for k in 0..=5 {
        let v = ymax * f64::from(k) / 5.0;
        let y = y0 - (y0 - y1) * f64::from(k) / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/>
<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            trim_num(v)
        );
    }
}

fn trim_num(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// A fixed-width text table: the first column left-aligned, the others right-aligned.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(c.chars().count());
            if i == 0 {
                out.push_str(c);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str("  ");
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    out.push_str(&"-".repeat(width.iter().sum::<usize>() + 2 * (cols - 1)));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Nums {
        #[serde(serialize_with = "num")]
        a: f64,
        #[serde(serialize_with = "num")]
        b: f64,
        #[serde(serialize_with = "num")]
        c: f64,
        #[serde(serialize_with = "num")]
        d: f64,
        #[serde(serialize_with = "opt_num")]
        e: Option<f64>,
        #[serde(serialize_with = "opt_num")]
        f: Option<f64>,
    }

    #[test]
    fn numbers_are_rounded_whole_or_null() {
        let n = Nums {
            a: 21.500_412,
            b: 2.000_01,
            c: 3416.0,
            d: f64::NAN,
            e: None,
            f: Some(0.333_33),
        };
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"a":21.5004,"b":2,"c":3416,"d":null,"e":null,"f":0.3333}"#
        );
    }

    #[test]
    fn the_floor_split_adds_up_to_the_gap() {
        let s = FloorSplit::of(3.0, 3.75, 6.5);
        assert_eq!((s.kernel_added, s.crabcan_own), (0.75, 2.75));
        assert_eq!(s.kernel_added + s.crabcan_own, s.crabcan - s.floor_cgroups);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"floor_cgroups":3,"floor_all":3.75,"crabcan":6.5,"kernel_added":0.75,"crabcan_own":2.75}"#
        );
    }

    #[test]
    fn stats_of_a_series() {
        let s = Stats::of(&[5.0, 1.0, f64::NAN, 3.0, 2.0, 4.0]);
        assert_eq!((s.n, s.min, s.median, s.max), (5, 1.0, 3.0, 5.0));
        assert_eq!(Stats::of(&[]).n, 0);
    }
}
