//! PromQL functions of Prometheus 2.42 for float samples.

use chrono::{DateTime, Datelike, Timelike};
use promql_parser::parser::{Call, Expr};
use regex::Regex;

use crate::aggregate::{kahan, valid_label_name};
use crate::engine::{Evaluator, Rng, Smp, Val, dur_ms, offset_ms, selector_matchers};
use crate::error::{PromqlError, Result};
use crate::labels::{LabelSet, NAME};
use crate::rollup::{WindowSamples, extrapolated, quantile, variance};

fn arg(c: &Call, i: usize) -> Result<&Expr> {
    c.args
        .args
        .get(i)
        .map(|b| b.as_ref())
        .ok_or_else(|| PromqlError::exec(format!("{} is missing argument {}", c.func.name, i + 1)))
}

fn map_vector(v: Vec<Smp>, keep_name: bool, f: impl Fn(f64) -> f64) -> Val {
    Val::Vector(
        v.into_iter()
            .map(|s| Smp {
                labels: if keep_name {
                    s.labels
                } else {
                    s.labels.without_name()
                },
                v: f(s.v),
                ts: s.ts,
            })
            .collect(),
    )
}

/// Applies `f` to each series' points; series for which it gives `None` are left out.
fn over_time(m: Vec<Rng>, keep_name: bool, f: impl Fn(&[(i64, f64)]) -> Option<f64>) -> Val {
    Val::Vector(
        m.into_iter()
            .filter_map(|s| {
                f(&s.points).map(|v| Smp {
                    labels: if keep_name {
                        s.labels
                    } else {
                        s.labels.without_name()
                    },
                    v,
                    ts: 0,
                })
            })
            .collect(),
    )
}

/// The window `[start, end]` (ms) of the matrix argument at evaluation time `t`.
fn window(ev: &Evaluator<'_>, e: &Expr, t: i64) -> Option<(i64, i64)> {
    let (at, offset, range) = match e {
        Expr::MatrixSelector(ms) => (&ms.vs.at, &ms.vs.offset, &ms.range),
        Expr::Subquery(sq) => (&sq.at, &sq.offset, &sq.range),
        Expr::Paren(p) => return window(ev, &p.expr, t),
        _ => return None,
    };
    let end = ev.at_time(at, t).saturating_sub(offset_ms(offset));
    Some((end.saturating_sub(dur_ms(range)), end))
}

fn instant_delta(ts: &[i64], vs: &[f64], rate: bool) -> Option<f64> {
    let n = ts.len();
    if n < 2 {
        return None;
    }
    let (p, l) = ((ts[n - 2], vs[n - 2]), (ts[n - 1], vs[n - 1]));
    let mut r = if rate && l.1 < p.1 { l.1 } else { l.1 - p.1 };
    if rate {
        let dt = l.0 - p.0;
        if dt == 0 {
            return None;
        }
        r /= dt as f64 / 1000.0;
    }
    Some(r)
}

/// Least-squares slope and intercept at `at` (ms) of the points.
fn linear_regression(ts: &[i64], vs: &[f64], at: i64) -> (f64, f64) {
    let init = vs[0];
    if vs.iter().all(|&v| v == init) {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let n = vs.len() as f64;
    let xs = || ts.iter().map(|&t| (t - at) as f64 / 1000.0);
    let sum_x = kahan(xs());
    let sum_y = kahan(vs.iter().copied());
    let sum_xy = kahan(xs().zip(vs).map(|(x, &y)| x * y));
    let sum_x2 = kahan(xs().map(|x| x * x));
    let cov = sum_xy - sum_x * sum_y / n;
    let var = sum_x2 - sum_x * sum_x / n;
    let slope = cov / var;
    (slope, sum_y / n - slope * sum_x / n)
}

/// Go's `math.Min`: -Inf if either is -Inf, else NaN if either is NaN; -0 is below +0.
fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else if a < b {
        a
    } else {
        b
    }
}

/// Go's `math.Max`: +Inf if either is +Inf, else NaN if either is NaN; +0 is above -0.
fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_positive() { a } else { b }
    } else if a > b {
        a
    } else {
        b
    }
}

/// The compensated (Neumaier) sum of `vals` when it is finite; `None` when a value is NaN or
/// infinite or the sum overflows (any of them leaves a running sum non-finite, and [`kahan`]
/// then decides). Without [`kahan`]'s checks for infinities inside the loop, and with four
/// running sums (positions modulo 4, joined at the end with their compensations), the loop
/// is not bound by the latency of one chain of additions.
fn kahan_finite(vals: &[f64]) -> Option<f64> {
    let (s, c, rest) = four_lanes(vals);
    let (mut s, mut c) = (s, c);
    for (k, &v) in rest.iter().enumerate() {
        two_sum(&mut s[k], &mut c[k], v);
    }
    if !s.iter().all(|v| v.is_finite()) {
        return None;
    }
    let (mut sum, mut comp) = (s[0], c[0] + c[1] + c[2] + c[3]);
    for &lane in &s[1..] {
        two_sum(&mut sum, &mut comp, lane);
    }
    // An intermediate of the two-sum overflowing near the float limits leaves `comp`
    // non-finite: the careful path decides then.
    (sum.is_finite() && comp.is_finite()).then_some(sum + comp)
}

/// Adds `v` to `sum` and its exact rounding error to `c`: Knuth's two-sum, the same error term
/// Neumaier's comparison picks, without the comparison.
#[inline(always)]
fn two_sum(sum: &mut f64, c: &mut f64, v: f64) {
    let t = *sum + v;
    let v_part = t - *sum;
    *c += (*sum - (t - v_part)) + (v - v_part);
    *sum = t;
}

/// Compensated sums and compensations of the values at positions 0, 1, 2 and 3 modulo 4 of
/// the whole quadruples of `vals`, and the values left over.
fn four_lanes(vals: &[f64]) -> ([f64; 4], [f64; 4], &[f64]) {
    let (mut s, mut c) = ([0.0f64; 4], [0.0f64; 4]);
    let quads = vals.chunks_exact(4);
    let rest = quads.remainder();
    for q in quads {
        for k in 0..4 {
            two_sum(&mut s[k], &mut c[k], q[k]);
        }
    }
    (s, c, rest)
}

/// `avg_over_time` as Prometheus 2.42 computes it: a running mean (each step adds
/// `v/n - mean/n`, so values near the float limits do not overflow), Kahan-compensated;
/// once the mean is infinite, finite values and infinities of the same sign leave it as is.
fn mean_over_time(vals: &[f64]) -> f64 {
    // With finite values whose sum does not overflow, the compensated sum over the count is
    // the same mean to the last bit or so, without a division per value on the critical path.
    // A NaN or an infinity among the values, or a sum that overflows, leaves the plain sum
    // non-finite: the careful path below then decides.
    if let Some(sum) = kahan_finite(vals) {
        return sum / vals.len() as f64;
    }
    let (mut mean, mut c, mut n) = (0.0f64, 0.0f64, 0.0f64);
    for &v in vals {
        n += 1.0;
        if mean.is_infinite() && (v.is_finite() || (v.is_infinite() && (v > 0.0) == (mean > 0.0))) {
            continue;
        }
        let inc = v / n - mean / n;
        let t = mean + inc;
        if mean.abs() >= inc.abs() {
            c += (mean - t) + inc;
        } else {
            c += (inc - t) + mean;
        }
        mean = t;
    }
    if mean.is_infinite() { mean } else { mean + c }
}

fn min_max(vs: &[f64], max: bool) -> f64 {
    vs.iter().copied().fold(f64::NAN, |acc, v| {
        if acc.is_nan() || (max && v > acc) || (!max && v < acc) {
            v
        } else {
            acc
        }
    })
}

/// Labels of `absent(...)`: the equality matchers of a selector, names used once only.
fn absent_labels(e: &Expr) -> Result<LabelSet> {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Ok(LabelSet::default()),
    };
    let ms = selector_matchers(vs)?;
    let mut out = LabelSet::default();
    for m in &ms {
        if m.name() == NAME {
            continue;
        }
        let uses = ms.iter().filter(|o| o.name() == m.name()).count();
        if uses == 1 && m.op() == tsdb_core::MatchOp::Equal {
            out.set(m.name(), m.value());
        }
    }
    Ok(out)
}

fn date_fn(
    ev: &Evaluator<'_>,
    c: &Call,
    t: i64,
    f: impl Fn(DateTime<chrono::Utc>) -> f64,
) -> Result<Val> {
    let conv = |secs: f64| -> f64 {
        if !secs.is_finite() || secs.abs() > 1e15 {
            return f64::NAN;
        }
        let ms = (secs * 1000.0).floor() as i64;
        DateTime::from_timestamp_millis(ms).map_or(f64::NAN, &f)
    };
    if c.args.args.is_empty() {
        return Ok(Val::Vector(vec![Smp {
            labels: LabelSet::default(),
            v: conv(t as f64 / 1000.0),
            ts: t,
        }]));
    }
    let v = ev.eval_vector(arg(c, 0)?, t)?;
    Ok(map_vector(v, false, conv))
}

fn days_in_month(d: DateTime<chrono::Utc>) -> f64 {
    let (y, m) = (d.year(), d.month());
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    match (
        chrono::NaiveDate::from_ymd_opt(y, m, 1),
        chrono::NaiveDate::from_ymd_opt(ny, nm, 1),
    ) {
        (Some(a), Some(b)) => (b - a).num_days() as f64,
        _ => f64::NAN,
    }
}

/// Expands `$1`, `${1}`, `$name`, `${name}` and `$$` in `template` from `caps`.
fn expand(template: &str, caps: &regex::Captures<'_>) -> String {
    let mut out = String::new();
    caps.expand(template, &mut out);
    out
}

/// The length of [`expand`]'s result, found without building it (so that a value over the
/// limit is refused before it takes memory). Follows the rules of `regex`'s
/// `Captures::expand`: `$$` is `$`; `$name` takes the longest run of `[0-9A-Za-z_]`;
/// `${name}` anything up to `}`; a name that parses as a number is a group index; an unknown
/// group is empty; a `$` that starts no reference is kept.
fn expanded_len(template: &str, caps: &regex::Captures<'_>) -> usize {
    let group_len = |name: &str| match name.parse::<usize>() {
        Ok(i) => caps.get(i).map_or(0, |m| m.len()),
        Err(_) => caps.name(name).map_or(0, |m| m.len()),
    };
    let mut rest = template;
    let mut len = 0usize;
    while let Some(i) = rest.find('$') {
        len += i;
        rest = &rest[i..];
        let after = &rest[1..];
        if after.starts_with('$') {
            len += 1;
            rest = &rest[2..];
            continue;
        }
        if let Some(braced) = after.strip_prefix('{') {
            if let Some(close) = braced.find('}') {
                len += group_len(&braced[..close]);
                rest = &braced[close + 1..];
                continue;
            }
        } else {
            let name_len = after
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            if name_len > 0 {
                len += group_len(&after[..name_len]);
                rest = &after[name_len..];
                continue;
            }
        }
        // Not a reference: the `$` is kept as it is.
        len += 1;
        rest = after;
    }
    len + rest.len()
}

/// A label name for an error's context: quoted, cut after 64 characters.
fn quoted(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((at, _)) => format!("{:?}...", &name[..at]),
        None => format!("{name:?}"),
    }
}

fn histogram_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Merge buckets with the same bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match merged.last_mut() {
            Some(l) if l.0 == b.0 => l.1 += b.1,
            _ => merged.push(b),
        }
    }
    // Counts must not decrease.
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 < max {
            b.1 = max;
        } else {
            max = b.1;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let total = merged[merged.len() - 1].1;
    if total == 0.0 || total.is_nan() {
        return f64::NAN;
    }
    let mut rank = q * total;
    let b = merged[..merged.len() - 1].partition_point(|x| x.1 < rank);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

fn holt_winters(points: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = points[0].1;
    let mut b = points[1].1 - points[0].1;
    for (i, p) in points.iter().enumerate().skip(1) {
        let x = sf * p.1;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

pub(crate) fn call(ev: &Evaluator<'_>, c: &Call, t: i64) -> Result<Val> {
    let name = c.func.name;
    let vec_arg = |i: usize| -> Result<Vec<Smp>> { ev.eval_vector(arg(c, i)?, t) };
    let mat_arg = |i: usize| -> Result<(Vec<Rng>, i64, i64)> {
        let e = arg(c, i)?;
        let m = ev.eval_matrix(e, t)?;
        let (s, en) = window(ev, e, t).unwrap_or((t, t));
        Ok((m, s, en))
    };
    let scalar_arg = |i: usize| -> Result<f64> { ev.eval_scalar(arg(c, i)?, t, name) };
    let simple = |f: fn(f64) -> f64| -> Result<Val> { Ok(map_vector(vec_arg(0)?, false, f)) };
    match name {
        "abs" => simple(f64::abs),
        "ceil" => simple(f64::ceil),
        "floor" => simple(f64::floor),
        "exp" => simple(f64::exp),
        "ln" => simple(f64::ln),
        "log2" => simple(f64::log2),
        "log10" => simple(f64::log10),
        "sqrt" => simple(f64::sqrt),
        "sgn" => simple(|v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        }),
        "acos" => simple(f64::acos),
        "acosh" => simple(f64::acosh),
        "asin" => simple(f64::asin),
        "asinh" => simple(f64::asinh),
        "atan" => simple(f64::atan),
        "atanh" => simple(f64::atanh),
        "cos" => simple(f64::cos),
        "cosh" => simple(f64::cosh),
        "sin" => simple(f64::sin),
        "sinh" => simple(f64::sinh),
        "tan" => simple(f64::tan),
        "tanh" => simple(f64::tanh),
        "deg" => simple(f64::to_degrees),
        "rad" => simple(f64::to_radians),
        "pi" => Ok(Val::Scalar(std::f64::consts::PI)),
        "round" => {
            let v = vec_arg(0)?;
            let to = if c.args.args.len() > 1 {
                scalar_arg(1)?
            } else {
                1.0
            };
            let inv = 1.0 / to;
            Ok(map_vector(v, false, |x| (x * inv + 0.5).floor() / inv))
        }
        "clamp" => {
            let v = vec_arg(0)?;
            let (lo, hi) = (scalar_arg(1)?, scalar_arg(2)?);
            if hi < lo {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(map_vector(v, false, |x| go_max(lo, go_min(hi, x))))
        }
        "clamp_min" => {
            let v = vec_arg(0)?;
            let lo = scalar_arg(1)?;
            Ok(map_vector(v, false, |x| go_max(lo, x)))
        }
        "clamp_max" => {
            let v = vec_arg(0)?;
            let hi = scalar_arg(1)?;
            Ok(map_vector(v, false, |x| go_min(hi, x)))
        }
        "time" => Ok(Val::Scalar(t as f64 / 1000.0)),
        "timestamp" => {
            let v = match arg(c, 0)? {
                // The time of the sample itself, not of the evaluation.
                Expr::VectorSelector(vs) => ev.vector_selector(vs, t)?,
                Expr::Paren(p) => ev.eval_vector(&p.expr, t)?,
                e => ev
                    .eval_vector(e, t)?
                    .into_iter()
                    .map(|s| Smp { ts: t, ..s })
                    .collect(),
            };
            Ok(Val::Vector(
                v.into_iter()
                    .map(|s| Smp {
                        labels: s.labels.without_name(),
                        v: s.ts as f64 / 1000.0,
                        ts: s.ts,
                    })
                    .collect(),
            ))
        }
        "vector" => Ok(Val::Vector(vec![Smp {
            labels: LabelSet::default(),
            v: scalar_arg(0)?,
            ts: t,
        }])),
        "scalar" => {
            let v = vec_arg(0)?;
            Ok(Val::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }))
        }
        "sort" | "sort_desc" => {
            let mut v = vec_arg(0)?;
            let desc = name == "sort_desc";
            v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if desc => b.v.total_cmp(&a.v),
                _ => a.v.total_cmp(&b.v),
            });
            Ok(Val::Vector(v))
        }
        "label_replace" => {
            let v = vec_arg(0)?;
            let strs: Vec<String> = (1..5)
                .map(|i| match ev.eval(arg(c, i)?, t)? {
                    Val::Str(s) => Ok(s),
                    _ => Err(PromqlError::exec("label_replace takes string arguments")),
                })
                .collect::<Result<_>>()?;
            let (dst, repl, src, re) = (&strs[0], &strs[1], &strs[2], &strs[3]);
            let re = Regex::new(&format!("^(?s:{re})$")).map_err(|e| {
                PromqlError::exec(format!(
                    "invalid regular expression in label_replace(): {e}"
                ))
            })?;
            if !valid_label_name(dst) {
                return Err(PromqlError::exec(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            ev.check_label_name(dst, "label_replace() destination")?;
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                let value = s.labels.get(src).unwrap_or_default().to_owned();
                if let Some(caps) = re.captures(&value) {
                    ev.check_label_value(expanded_len(repl, &caps), || {
                        format!("label_replace() destination {}", quoted(dst))
                    })?;
                    let res = expand(repl, &caps);
                    s.labels.set(dst, &res);
                }
                out.push(s);
            }
            Ok(Val::Vector(out))
        }
        "label_join" => {
            let v = vec_arg(0)?;
            let mut strs = Vec::new();
            for i in 1..c.args.args.len() {
                match ev.eval(arg(c, i)?, t)? {
                    Val::Str(s) => strs.push(s),
                    _ => return Err(PromqlError::exec("label_join takes string arguments")),
                }
            }
            if strs.len() < 2 {
                return Err(PromqlError::exec(
                    "label_join needs a destination and a separator",
                ));
            }
            let dst = strs[0].clone();
            if !valid_label_name(&dst) {
                return Err(PromqlError::exec(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            ev.check_label_name(&dst, "label_join() destination")?;
            let sep = strs[1].clone();
            let srcs = &strs[2..];
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                let len = srcs
                    .iter()
                    .map(|n| s.labels.get(n).map_or(0, str::len))
                    .sum::<usize>()
                    .saturating_add(sep.len().saturating_mul(srcs.len().saturating_sub(1)));
                ev.check_label_value(len, || format!("label_join() destination {}", quoted(&dst)))?;
                let joined = srcs
                    .iter()
                    .map(|n| s.labels.get(n).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(&sep);
                s.labels.set(&dst, &joined);
                out.push(s);
            }
            Ok(Val::Vector(out))
        }
        "absent" => {
            let v = vec_arg(0)?;
            if !v.is_empty() {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(Val::Vector(vec![Smp {
                labels: absent_labels(arg(c, 0)?)?,
                v: 1.0,
                ts: t,
            }]))
        }
        "absent_over_time" => {
            let (m, _, _) = mat_arg(0)?;
            if m.iter().any(|s| !s.points.is_empty()) {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(Val::Vector(vec![Smp {
                labels: absent_labels(arg(c, 0)?)?,
                v: 1.0,
                ts: t,
            }]))
        }
        "rate" | "increase" | "delta" | "irate" | "idelta" | "deriv" => {
            let f = RangeFunction::from_call(c, ev, t)?
                .ok_or_else(|| PromqlError::exec(format!("{name} needs a range vector")))?;
            let (m, s, e) = mat_arg(0)?;
            Ok(over_time(m, f.keeps_name(), |p| f.apply(p, (s, e))))
        }
        "predict_linear" => {
            let (m, _, _) = mat_arg(0)?;
            let d = scalar_arg(1)?;
            Ok(over_time(m, false, |p| {
                (p.len() >= 2).then(|| {
                    let (ts, vs): (Vec<i64>, Vec<f64>) = p.iter().copied().unzip();
                    let (slope, icpt) = linear_regression(&ts, &vs, t);
                    slope * d + icpt
                })
            }))
        }
        // Prometheus 2.42's name; its later name `double_exponential_smoothing`, which the
        // parser knows, is newer syntax and falls to the `Unsupported` arm below.
        "holt_winters" => {
            let (m, _, _) = mat_arg(0)?;
            let (sf, tf) = (scalar_arg(1)?, scalar_arg(2)?);
            // As in 2.42, the factors are checked only when there is a series to smooth (an
            // empty selection is no error), and NaN passes the check (it is neither <= 0
            // nor >= 1).
            if m.iter().any(|s| !s.points.is_empty()) {
                if sf <= 0.0 || sf >= 1.0 {
                    return Err(PromqlError::exec(format!(
                        "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                    )));
                }
                if tf <= 0.0 || tf >= 1.0 {
                    return Err(PromqlError::exec(format!(
                        "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                    )));
                }
            }
            Ok(over_time(m, false, |p| holt_winters(p, sf, tf)))
        }
        "changes" | "resets" | "avg_over_time" | "sum_over_time" | "count_over_time"
        | "min_over_time" | "max_over_time" | "stddev_over_time" | "stdvar_over_time"
        | "last_over_time" | "present_over_time" | "quantile_over_time" => {
            let f = RangeFunction::from_call(c, ev, t)?
                .ok_or_else(|| PromqlError::exec(format!("{name} needs a range vector")))?;
            let (m, s, e) = mat_arg(if name == "quantile_over_time" { 1 } else { 0 })?;
            Ok(over_time(m, f.keeps_name(), |p| f.apply(p, (s, e))))
        }
        "histogram_quantile" => {
            let q = scalar_arg(0)?;
            let v = vec_arg(1)?;
            let mut groups: Vec<(LabelSet, Vec<(f64, f64)>)> = Vec::new();
            let mut index = std::collections::HashMap::new();
            // Buckets are grouped by all their labels but `le`, the metric name included: two
            // histograms that differ only by name stay apart, and as both lose the name in
            // the output, the duplicate check of the caller refuses the result (as 2.42 does).
            for s in v {
                let Some(le) = s.labels.get("le").and_then(parse_le) else {
                    continue;
                };
                let mut key = s.labels;
                key.remove("le");
                let i = *index.entry(key.clone()).or_insert_with(|| {
                    groups.push((key, Vec::new()));
                    groups.len() - 1
                });
                groups[i].1.push((le, s.v));
            }
            Ok(Val::Vector(
                groups
                    .into_iter()
                    .map(|(labels, b)| Smp {
                        labels: labels.without_name(),
                        v: histogram_quantile(q, b),
                        ts: t,
                    })
                    .collect(),
            ))
        }
        "day_of_month" => date_fn(ev, c, t, |d| f64::from(d.day())),
        "day_of_week" => date_fn(ev, c, t, |d| f64::from(d.weekday().num_days_from_sunday())),
        "day_of_year" => date_fn(ev, c, t, |d| f64::from(d.ordinal())),
        "days_in_month" => date_fn(ev, c, t, days_in_month),
        "hour" => date_fn(ev, c, t, |d| f64::from(d.hour())),
        "minute" => date_fn(ev, c, t, |d| f64::from(d.minute())),
        "month" => date_fn(ev, c, t, |d| f64::from(d.month())),
        "year" => date_fn(ev, c, t, |d| f64::from(d.year())),
        other => Err(PromqlError::Unsupported(format!("function {other}"))),
    }
}

/// Parses a bucket bound as Go's `strconv.ParseFloat` would accept it in practice.
fn parse_le(s: &str) -> Option<f64> {
    match s.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        t => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn expanded_len_matches_expand_on_the_usual_templates() {
        let re = Regex::new("^(?s:(?P<first>a+)(b*)(?P<x_1>c)?)$").expect("regex");
        let caps = re.captures("aaabbc").expect("matches");
        for template in [
            "",
            "$1",
            "$1$1",
            "${1}x",
            "$1x",
            "$first-$2",
            "${first}",
            "$$1",
            "$",
            "a$",
            "$$",
            "${",
            "${unclosed",
            "$-",
            "$9",
            "$x_1",
            "${x_1}",
            "$0",
            "${}",
            "é$1é",
            "$é",
        ] {
            assert_eq!(
                expanded_len(template, &caps),
                expand(template, &caps).len(),
                "{template:?}"
            );
        }
    }

    /// The exactly rounded sum of `vals` (Shewchuk's partials, as Python's `math.fsum`).
    fn exact_sum(vals: &[f64]) -> f64 {
        let mut partials: Vec<f64> = Vec::new();
        for &v in vals {
            let mut x = v;
            let mut kept = 0;
            for i in 0..partials.len() {
                let mut y = partials[i];
                if x.abs() < y.abs() {
                    std::mem::swap(&mut x, &mut y);
                }
                let hi = x + y;
                let lo = y - (hi - x);
                if lo != 0.0 {
                    partials[kept] = lo;
                    kept += 1;
                }
                x = hi;
            }
            partials.truncate(kept);
            partials.push(x);
        }
        partials.iter().rev().fold(0.0, |acc, &p| acc + p)
    }

    #[test]
    fn compensated_sum_keeps_what_cancellation_would_lose() {
        assert_eq!(kahan_finite(&[1e100, 1.0, -1e100]), Some(1.0));
        assert_eq!(kahan_finite(&[1.0, 1e100, 1.0, -1e100, 1.0]), Some(3.0));
        assert_eq!(kahan_finite(&[]), Some(0.0));
        assert_eq!(kahan_finite(&[f64::MAX, f64::MAX]), None);
        assert_eq!(kahan_finite(&[1.0, f64::NAN]), None);
        assert_eq!(kahan_finite(&[f64::INFINITY, 1.0]), None);
    }

    proptest! {
        #[test]
        fn compensated_sum_is_within_two_ulps_of_the_exact_sum(
            vals in proptest::collection::vec(
                prop_oneof![-1e6f64..1e6, -1e300f64..1e300, (-100i32..100).prop_map(|c| f64::from(c) / 100.0)],
                0..70,
            ),
        ) {
            let exact = exact_sum(&vals);
            let got = kahan_finite(&vals);
            prop_assume!(exact.is_finite() && got.is_some());
            let got = got.unwrap_or_default();
            let abs: f64 = vals.iter().map(|v| v.abs()).sum();
            let n = vals.len() as f64;
            let bound = 2.0 * f64::EPSILON * exact.abs() + n * n * f64::EPSILON * f64::EPSILON * abs;
            prop_assert!((got - exact).abs() <= bound, "{got} vs exact {exact}");
        }

        #[test]
        fn expanded_len_matches_expand(
            template in "[$\\{\\}a-c0-3_xé-]{0,24}",
            value in "[abc]{0,8}",
        ) {
            let re = Regex::new("^(?s:(?P<a>a*)(b*)(?P<c_1>c*))$").expect("regex");
            if let Some(caps) = re.captures(&value) {
                prop_assert_eq!(expanded_len(&template, &caps), expand(&template, &caps).len());
            }
        }
    }
}

/// A range function over a range vector whose other arguments are constants: the part of a
/// query a series source may evaluate itself, close to its storage (see
/// [`crate::SeriesSource::select_rollup`]). [`RangeFunction::apply`] is the one
/// implementation of its arithmetic, used by the engine and by sources alike.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum RangeFunction {
    /// `rate`.
    Rate,
    /// `increase`.
    Increase,
    /// `delta`.
    Delta,
    /// `irate`.
    Irate,
    /// `idelta`.
    Idelta,
    /// `deriv`.
    Deriv,
    /// `changes`.
    Changes,
    /// `resets`.
    Resets,
    /// `avg_over_time`.
    AvgOverTime,
    /// `sum_over_time`.
    SumOverTime,
    /// `count_over_time`.
    CountOverTime,
    /// `min_over_time`.
    MinOverTime,
    /// `max_over_time`.
    MaxOverTime,
    /// `stddev_over_time`.
    StddevOverTime,
    /// `stdvar_over_time`.
    StdvarOverTime,
    /// `last_over_time`.
    LastOverTime,
    /// `present_over_time`.
    PresentOverTime,
    /// `quantile_over_time(q, ...)`.
    QuantileOverTime(f64),
}

impl RangeFunction {
    /// The function of a call with its constant arguments evaluated (`None` for other
    /// functions).
    pub(crate) fn from_call(c: &Call, ev: &Evaluator<'_>, t: i64) -> Result<Option<Self>> {
        Ok(Some(match c.func.name {
            "quantile_over_time" => {
                RangeFunction::QuantileOverTime(ev.eval_scalar(arg(c, 0)?, t, c.func.name)?)
            }
            name => match Self::simple(name) {
                Some(f) => f,
                None => return Ok(None),
            },
        }))
    }

    /// The function named `name` when it takes no argument but the range vector.
    pub(crate) fn simple(name: &str) -> Option<Self> {
        Some(match name {
            "rate" => RangeFunction::Rate,
            "increase" => RangeFunction::Increase,
            "delta" => RangeFunction::Delta,
            "irate" => RangeFunction::Irate,
            "idelta" => RangeFunction::Idelta,
            "deriv" => RangeFunction::Deriv,
            "changes" => RangeFunction::Changes,
            "resets" => RangeFunction::Resets,
            "avg_over_time" => RangeFunction::AvgOverTime,
            "sum_over_time" => RangeFunction::SumOverTime,
            "count_over_time" => RangeFunction::CountOverTime,
            "min_over_time" => RangeFunction::MinOverTime,
            "max_over_time" => RangeFunction::MaxOverTime,
            "stddev_over_time" => RangeFunction::StddevOverTime,
            "stdvar_over_time" => RangeFunction::StdvarOverTime,
            "last_over_time" => RangeFunction::LastOverTime,
            "present_over_time" => RangeFunction::PresentOverTime,
            _ => return None,
        })
    }

    /// Whether the result keeps the metric name (only `last_over_time` does, in 2.42).
    pub fn keeps_name(self) -> bool {
        self == RangeFunction::LastOverTime
    }

    /// The function's value over one window: `points` are the window's samples in time order
    /// (staleness markers already left out), `window` its `[start, end]` in ms. `None` when
    /// the function has no value there (too few samples).
    pub fn apply(self, points: &[(i64, f64)], window: (i64, i64)) -> Option<f64> {
        let (ts, vs): (Vec<i64>, Vec<f64>) = points.iter().copied().unzip();
        self.apply_columns(&ts, &vs, window)
    }

    /// [`RangeFunction::apply`] over the window's samples as columns (`timestamps[i]`,
    /// `values[i]`, equal lengths).
    pub fn apply_columns(self, ts: &[i64], vs: &[f64], window: (i64, i64)) -> Option<f64> {
        if ts.is_empty() || ts.len() != vs.len() {
            return None;
        }
        match self {
            RangeFunction::Rate | RangeFunction::Increase | RangeFunction::Delta => {
                let counter = self != RangeFunction::Delta;
                let (first, last) = (ts[0], ts[ts.len() - 1]);
                let samples = WindowSamples::new(first, last, vs.iter().copied(), counter)?;
                extrapolated(samples, window, counter, self == RangeFunction::Rate)
            }
            RangeFunction::Irate => instant_delta(ts, vs, true),
            RangeFunction::Idelta => instant_delta(ts, vs, false),
            RangeFunction::Deriv => (ts.len() >= 2).then(|| linear_regression(ts, vs, ts[0]).0),
            RangeFunction::Changes => Some(
                vs.windows(2)
                    .filter(|w| w[0] != w[1] && !(w[0].is_nan() && w[1].is_nan()))
                    .count() as f64,
            ),
            RangeFunction::Resets => Some(vs.windows(2).filter(|w| w[1] < w[0]).count() as f64),
            RangeFunction::AvgOverTime => Some(mean_over_time(vs)),
            RangeFunction::SumOverTime => {
                Some(kahan_finite(vs).unwrap_or_else(|| kahan(vs.iter().copied())))
            }
            RangeFunction::CountOverTime => Some(vs.len() as f64),
            RangeFunction::MinOverTime => Some(min_max(vs, false)),
            RangeFunction::MaxOverTime => Some(min_max(vs, true)),
            RangeFunction::StddevOverTime => Some(variance(vs.iter().copied()).sqrt()),
            RangeFunction::StdvarOverTime => Some(variance(vs.iter().copied())),
            RangeFunction::LastOverTime => vs.last().copied(),
            RangeFunction::PresentOverTime => Some(1.0),
            RangeFunction::QuantileOverTime(q) => {
                let mut v = vs.to_vec();
                Some(quantile(q, &mut v))
            }
        }
    }
}
