//! The command line of the reference echo servers (`src/bin/echo_server*.rs`, which include this
//! file): `NAME [--lifetime SECONDS]`.

use std::time::Duration;

/// How long to serve (an hour unless `--lifetime` says), or the usage message.
pub fn lifetime(name: &str) -> Result<Duration, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match &args[..] {
        [] => Ok(Duration::from_secs(3600)),
        [flag, value] if flag == "--lifetime" => value
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("bad value for --lifetime: {value:?}")),
        _ => Err(format!("usage: {name} [--lifetime SECONDS]")),
    }
}
