//! Exact discrete Laplace noise on integers.
//!
//! Floating-point Laplace noise leaks the true value through the gaps and
//! rounding of its output (Mironov 2012), so every draw here is integer
//! arithmetic on uniform random integers from a cryptographic source, as in
//! Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential
//! Privacy" (2020): Algorithm 1 samples Bernoulli(exp(-γ)) for a rational γ
//! exactly, Algorithm 2 builds the discrete Laplace (two-sided geometric)
//! distribution `P[Z = z] ∝ exp(-|z| / scale)` from it for a rational scale.
//!
//! For a query of sensitivity Δ under ε-DP the scale is Δ/ε; with ε given in
//! micro-epsilon (`eps_micro`, an integer) the scale is the exact fraction
//! `Δ·10^6 / eps_micro`, so no float ever touches a released number.

use ring::rand::{SecureRandom, SystemRandom};

/// A source of uniform random bits. The gateway uses [`CryptoRandom`];
/// tests may use a seeded generator to check the algorithm's arithmetic.
pub trait RandomBits {
    fn next_u64(&mut self) -> Result<u64, NoiseError>;
}

#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    #[error("the system random source failed")]
    Random,
    #[error("invalid noise parameters")]
    Parameters,
}

/// `ring`'s system random source (the operating system's CSPRNG).
pub struct CryptoRandom {
    rng: SystemRandom,
    buf: [u8; 256],
    pos: usize,
}

impl Default for CryptoRandom {
    fn default() -> Self {
        Self {
            rng: SystemRandom::new(),
            buf: [0; 256],
            pos: 256,
        }
    }
}

impl RandomBits for CryptoRandom {
    fn next_u64(&mut self) -> Result<u64, NoiseError> {
        if self.pos + 8 > self.buf.len() {
            self.rng
                .fill(&mut self.buf)
                .map_err(|_| NoiseError::Random)?;
            self.pos = 0;
        }
        let mut word = [0u8; 8];
        let bytes = self
            .buf
            .get(self.pos..self.pos + 8)
            .ok_or(NoiseError::Random)?;
        word.copy_from_slice(bytes);
        self.pos += 8;
        Ok(u64::from_le_bytes(word))
    }
}

/// A uniform integer in `[0, n)`, by rejection (no modulo bias).
pub fn uniform_below(rng: &mut impl RandomBits, n: u64) -> Result<u64, NoiseError> {
    if n == 0 {
        return Err(NoiseError::Parameters);
    }
    // Largest multiple of n that fits: values at or above it are rejected.
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let x = rng.next_u64()?;
        if x < zone {
            return Ok(x % n);
        }
    }
}

/// Bernoulli(num/den), exactly.
fn bernoulli(rng: &mut impl RandomBits, num: u64, den: u64) -> Result<bool, NoiseError> {
    Ok(uniform_below(rng, den)? < num)
}

/// Bernoulli(exp(-num/den)), exactly (CKS 2020, Algorithm 1).
pub fn bernoulli_exp_neg(
    rng: &mut impl RandomBits,
    num: u64,
    den: u64,
) -> Result<bool, NoiseError> {
    if den == 0 {
        return Err(NoiseError::Parameters);
    }
    if num <= den {
        // γ ≤ 1: draw A_k ~ Bernoulli(γ/k) for k = 1, 2, ... until one is 0;
        // the number of draws K is odd with probability exp(-γ).
        let mut k: u64 = 1;
        loop {
            let d = den.checked_mul(k).ok_or(NoiseError::Parameters)?;
            if !bernoulli(rng, num, d)? {
                break;
            }
            k += 1;
        }
        Ok(k % 2 == 1)
    } else {
        // exp(-γ) = exp(-1)^⌊γ⌋ · exp(-(γ - ⌊γ⌋)).
        for _ in 0..num / den {
            if !bernoulli_exp_neg(rng, 1, 1)? {
                return Ok(false);
            }
        }
        bernoulli_exp_neg(rng, num % den, den)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// One draw from the discrete Laplace distribution with scale `num/den`
/// (CKS 2020, Algorithm 2): `P[Z = z] ∝ exp(-|z| · den / num)`.
pub fn discrete_laplace(
    rng: &mut impl RandomBits,
    scale_num: u64,
    scale_den: u64,
) -> Result<i64, NoiseError> {
    if scale_num == 0 || scale_den == 0 {
        return Err(NoiseError::Parameters);
    }
    let g = gcd(scale_num, scale_den);
    // In the paper's notation the scale is t/s.
    let (t, s) = (scale_num / g, scale_den / g);
    loop {
        let u = uniform_below(rng, t)?;
        if !bernoulli_exp_neg(rng, u, t)? {
            continue;
        }
        let mut v: u64 = 0;
        while bernoulli_exp_neg(rng, 1, 1)? {
            v += 1;
        }
        // X = U + t·V is geometric with parameter 1 - exp(-1/t).
        let x = v
            .checked_mul(t)
            .and_then(|tv| tv.checked_add(u))
            .ok_or(NoiseError::Parameters)?;
        let y = i64::try_from(x / s).map_err(|_| NoiseError::Parameters)?;
        let negative = bernoulli(rng, 1, 2)?;
        if negative && y == 0 {
            continue;
        }
        return Ok(if negative { -y } else { y });
    }
}

/// The noise of one ε-DP release of a quantity with sensitivity `sensitivity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mechanism {
    pub sensitivity: u64,
    pub eps_micro: u64,
}

impl Mechanism {
    /// The scale Δ/ε as an exact fraction.
    pub fn scale(&self) -> (u64, u64) {
        (self.sensitivity.saturating_mul(1_000_000), self.eps_micro)
    }

    pub fn sample(&self, rng: &mut impl RandomBits) -> Result<i64, NoiseError> {
        let (n, d) = self.scale();
        discrete_laplace(rng, n, d)
    }

    /// Half-width `m` of the central 95% interval: the smallest `m` with
    /// `P[|Z| ≤ m] ≥ 0.95`. Derived from public parameters only, so the
    /// float arithmetic here reveals nothing about the data.
    ///
    /// Closed form, not a walk over `m`: with `a = e^(-1/scale)`,
    /// `P[|Z| > m] = 2·a^(m+1) / (1 + a)`, so the bound is
    /// `m + 1 ≥ scale · ln(40 / (1 + a))`. A walk costs O(scale) steps, and
    /// a sum with a large clamp split over many cells has a scale of 10^10
    /// and more: seconds of CPU on an async worker per released cell.
    pub fn half_width_95(&self) -> i64 {
        let (n, d) = self.scale();
        if n == 0 || d == 0 {
            return 0;
        }
        let scale = n as f64 / d as f64;
        let a = (-1.0 / scale).exp();
        // P[|Z| > m], i.e. P[|Z| ≥ m + 1].
        let outside = |m: f64| 2.0 * (-(m + 1.0) / scale).exp() / (1.0 + a);
        // Integers stay exact in an f64 up to 2^53.
        let cap = 9_007_199_254_740_992.0;
        let mut m = ((scale * (40.0 / (1.0 + a)).ln()).ceil() - 1.0).clamp(0.0, cap);
        // The float estimate can be off by one either way: settle it
        // against the definition.
        while m > 0.0 && outside(m - 1.0) <= 0.05 {
            m -= 1.0;
        }
        while outside(m) > 0.05 && m < cap {
            m += 1.0;
        }
        m as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    struct Seeded(rand_chacha::ChaCha8Rng);
    impl RandomBits for Seeded {
        fn next_u64(&mut self) -> Result<u64, NoiseError> {
            Ok(self.0.next_u64())
        }
    }

    /// The exact probability mass of the discrete Laplace with scale b.
    fn pmf(b: f64, z: i64) -> f64 {
        let a = (-1.0 / b).exp();
        (1.0 - a) / (1.0 + a) * a.powi(z.unsigned_abs() as i32)
    }

    /// Pearson chi-square of `n` draws against the pmf, tails pooled.
    fn chi_square(draw: &mut dyn FnMut() -> i64, b: f64, n: usize, cut: i64) -> (f64, usize) {
        let bins = (2 * cut + 1) as usize;
        let mut counts = vec![0usize; bins + 2];
        for _ in 0..n {
            let z = draw();
            let i = if z < -cut {
                bins
            } else if z > cut {
                bins + 1
            } else {
                (z + cut) as usize
            };
            counts[i] += 1;
        }
        let mut chi = 0.0;
        let tail: f64 = 1.0 - (-cut..=cut).map(|z| pmf(b, z)).sum::<f64>();
        for (i, &c) in counts.iter().enumerate() {
            let p = if i < bins {
                pmf(b, i as i64 - cut)
            } else {
                tail / 2.0
            };
            let e = p * n as f64;
            chi += (c as f64 - e).powi(2) / e;
        }
        (chi, bins + 1)
    }

    #[test]
    fn bernoulli_exp_matches_its_probability() {
        let mut rng = Seeded(rand_chacha::ChaCha8Rng::seed_from_u64(7));
        for (num, den) in [(1u64, 2u64), (1, 1), (3, 2), (5, 1)] {
            let n = 40_000;
            let hits = (0..n)
                .filter(|_| bernoulli_exp_neg(&mut rng, num, den).unwrap())
                .count();
            let p = (-(num as f64) / den as f64).exp();
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            let got = hits as f64 / n as f64;
            assert!((got - p).abs() < 5.0 * sd, "{num}/{den}: {got} vs {p}");
        }
    }

    /// The sampler's distribution, from the cryptographic source the gateway
    /// uses, against the exact pmf: chi-square far below the 1e-6 critical
    /// value (about 56 for 19 degrees of freedom), so the test is not flaky
    /// but fails for a wrong scale, a missing rejection (double mass at 0)
    /// or a sign bias.
    #[test]
    fn discrete_laplace_has_the_right_distribution() {
        let mut rng = CryptoRandom::default();
        let m = Mechanism {
            sensitivity: 1,
            eps_micro: 500_000,
        }; // scale 2
        let (chi, df) = chi_square(&mut || m.sample(&mut rng).unwrap(), 2.0, 50_000, 9);
        assert_eq!(df, 20);
        assert!(chi < 56.0, "chi-square {chi} for {df} bins");
        // The same test catches a sampler with the wrong scale.
        let wrong = Mechanism {
            sensitivity: 1,
            eps_micro: 400_000,
        };
        let (chi, _) = chi_square(&mut || wrong.sample(&mut rng).unwrap(), 2.0, 50_000, 9);
        assert!(chi > 56.0, "a wrong scale went unnoticed: {chi}");
    }

    #[test]
    fn mean_is_zero_and_fractional_scales_work() {
        let mut rng = Seeded(rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let m = Mechanism {
            sensitivity: 3,
            eps_micro: 1_300_000,
        };
        let n = 20_000;
        let sum: i64 = (0..n).map(|_| m.sample(&mut rng).unwrap()).sum();
        let (sn, sd) = m.scale();
        let b = sn as f64 / sd as f64;
        let var = 2.0 * (-1.0 / b).exp() / (1.0 - (-1.0 / b).exp()).powi(2);
        assert!(((sum as f64) / n as f64).abs() < 5.0 * (var / n as f64).sqrt());
    }

    #[test]
    fn interval_covers_ninety_five_percent() {
        let m = Mechanism {
            sensitivity: 1,
            eps_micro: 1_000_000,
        };
        let h = m.half_width_95();
        let inside: f64 = (-h..=h).map(|z| pmf(1.0, z)).sum();
        let smaller: f64 = (-(h - 1)..=(h - 1)).map(|z| pmf(1.0, z)).sum();
        assert!(inside >= 0.95 && smaller < 0.95, "h = {h}");
        assert_eq!(h, 3);
    }

    /// The definition, walked one `m` at a time (fine for small scales).
    fn half_width_by_walking(scale: f64) -> i64 {
        let a = (-1.0 / scale).exp();
        let mut m = 0;
        let mut tail = 2.0 * a / (1.0 + a);
        while tail > 0.05 {
            m += 1;
            tail *= a;
        }
        m
    }

    #[test]
    fn the_closed_form_interval_matches_the_definition() {
        for (sensitivity, eps_micro) in [
            (1, 1_000_000),
            (1, 2_000_000),
            (1, 10_000_000),
            (1, 500_000),
            (3, 700_000),
            (1, 100_000),
            (1, 1_000),
            (100, 7_000),
            (5_000, 250_000),
        ] {
            let m = Mechanism {
                sensitivity,
                eps_micro,
            };
            let scale = sensitivity as f64 * 1e6 / eps_micro as f64;
            assert_eq!(
                m.half_width_95(),
                half_width_by_walking(scale),
                "scale {scale}"
            );
        }
    }

    #[test]
    fn a_huge_scale_is_answered_at_once() {
        // A sum clamped at 10^6 cents with ε = 10^-6: scale 10^12, which a
        // walk would take minutes over.
        let m = Mechanism {
            sensitivity: 1_000_000,
            eps_micro: 1,
        };
        let started = std::time::Instant::now();
        let h = m.half_width_95();
        assert!(started.elapsed() < std::time::Duration::from_millis(5));
        // ln(40 / (1 + a)) → ln 20 as a → 1.
        let expected = 1e12 * 20.0_f64.ln();
        assert!((h as f64 - expected).abs() / expected < 1e-9, "h = {h}");
    }

    #[test]
    fn bad_parameters_are_errors_not_panics() {
        let mut rng = CryptoRandom::default();
        assert!(discrete_laplace(&mut rng, 0, 1).is_err());
        assert!(discrete_laplace(&mut rng, 1, 0).is_err());
        assert!(uniform_below(&mut rng, 0).is_err());
    }
}
