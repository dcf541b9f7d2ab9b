//! Reading samples out of Prometheus text exposition. Shared by the tests of the real
//! binary (`harness`) and the in-process ones (`inproc`, which includes this file by path).

/// The sum of every sample of `name` whose labels include all of `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(inner) => inner.split_once("} ").expect("a closed label set"),
            None => match rest.strip_prefix(' ') {
                Some(value) => ("", value),
                None => continue, // another metric with this prefix
            },
        };
        let has_all = labels.iter().all(|(k, v)| {
            label_text
                .split(',')
                .any(|pair| pair == format!("{k}=\"{v}\""))
        });
        if has_all {
            sum += value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .expect("a numeric sample");
        }
    }
    sum
}
