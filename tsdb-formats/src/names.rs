//! Names from formats with looser rules (Influx measurements, fields and tags) made into
//! Prometheus metric and label names.

/// `name` with every character outside `[a-zA-Z0-9_:]` replaced by `_`, and a leading digit
/// prefixed by `_`: a valid metric name (unless empty).
pub fn sanitize_metric_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// [`sanitize_metric_name`] without colons: a valid label name (unless empty or starting
/// with the reserved `__`).
pub fn sanitize_label_name(name: &str) -> String {
    sanitize_metric_name(name).replace(':', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize_metric_name("cpu.usage-idle"), "cpu_usage_idle");
        assert_eq!(sanitize_metric_name("1m"), "_1m");
        assert_eq!(sanitize_metric_name("a:b"), "a:b");
        assert_eq!(sanitize_label_name("a:b"), "a_b");
    }
}
