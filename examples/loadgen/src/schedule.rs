//! When each call starts: offsets from the start of the run.

use rand::{Rng, SeedableRng};
use std::time::Duration;

/// How new calls are spread over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrivals {
    /// One call every 1/rate seconds.
    Even,
    /// Exponential gaps with mean 1/rate: many independent clients.
    Poisson,
}

impl std::str::FromStr for Arrivals {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "even" => Ok(Arrivals::Even),
            "poisson" => Ok(Arrivals::Poisson),
            other => Err(format!("unknown arrivals {other:?} (even or poisson)")),
        }
    }
}

/// Start offsets of `calls` calls at `rate` calls per second, ascending.
/// The same seed gives the same schedule.
pub fn offsets(arrivals: Arrivals, rate: f64, calls: usize, seed: u64) -> Vec<Duration> {
    let mean = 1.0 / rate;
    match arrivals {
        Arrivals::Even => (0..calls)
            .map(|i| Duration::from_secs_f64(i as f64 * mean))
            .collect(),
        Arrivals::Poisson => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut at = 0.0_f64;
            (0..calls)
                .map(|_| {
                    let now = Duration::from_secs_f64(at);
                    // 1 - u is in (0, 1], so the logarithm is finite.
                    let u: f64 = rng.random();
                    at += -(1.0 - u).ln() * mean;
                    now
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_spacing_is_exact() {
        let o = offsets(Arrivals::Even, 1000.0, 4, 1);
        let ms: Vec<u128> = o.iter().map(|d| d.as_micros()).collect();
        assert_eq!(ms, vec![0, 1000, 2000, 3000]);
    }

    #[test]
    fn poisson_keeps_the_mean_rate_and_varies_the_gaps() {
        let calls = 20_000;
        let o = offsets(Arrivals::Poisson, 2000.0, calls, 7);
        assert!(o.windows(2).all(|w| w[0] <= w[1]), "ascending");
        let span = o[calls - 1].as_secs_f64();
        let rate = (calls - 1) as f64 / span;
        assert!((rate - 2000.0).abs() < 2000.0 * 0.05, "mean rate {rate}");
        let gaps: Vec<f64> = o.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
        // An exponential distribution's deviation equals its mean.
        assert!((sd / mean - 1.0).abs() < 0.1, "sd/mean {}", sd / mean);
        assert_eq!(o, offsets(Arrivals::Poisson, 2000.0, calls, 7), "seeded");
    }

    #[test]
    fn arrivals_parse() {
        assert_eq!("even".parse(), Ok(Arrivals::Even));
        assert_eq!("poisson".parse(), Ok(Arrivals::Poisson));
        assert!("bursty".parse::<Arrivals>().is_err());
    }
}
