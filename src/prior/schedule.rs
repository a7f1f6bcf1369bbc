//! The DDPM noise schedule (Ho et al. 2020), as used by DPS, and its respacing.
//!
//! Forward process: `x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε`, t = 0 … T−1, with
//! `ᾱ_t = Π_{s ≤ t} (1 − β_s)`. The model is always called with the index `t` of the
//! original T-step schedule; a respaced schedule keeps that map in
//! [`Schedule::timesteps`].

use serde::{Deserialize, Serialize};

/// How the β of the original schedule are laid out (recorded in the model card).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BetaSchedule {
    /// β linear from `beta_start` to `beta_end` over `timesteps` steps
    /// (the paper: 1e-4 … 0.02, T = 1000).
    Linear {
        beta_start: f64,
        beta_end: f64,
        timesteps: usize,
    },
}

impl BetaSchedule {
    /// Whether the schedule is a diffusion: at least one step, every β in (0, 1).
    pub fn check(&self) -> Result<(), String> {
        match *self {
            BetaSchedule::Linear {
                beta_start,
                beta_end,
                timesteps,
            } => {
                if timesteps < 1 {
                    return Err("schedule: timesteps must be ≥ 1".into());
                }
                if ![beta_start, beta_end].iter().all(|b| *b > 0.0 && *b < 1.0) {
                    return Err(format!(
                        "schedule: beta_start ({beta_start}) and beta_end ({beta_end}) must lie in (0, 1)"
                    ));
                }
                Ok(())
            }
        }
    }
}

impl Default for BetaSchedule {
    fn default() -> Self {
        Self::Linear {
            beta_start: 1e-4,
            beta_end: 0.02,
            timesteps: 1000,
        }
    }
}

/// A (possibly respaced) sequence of diffusion steps, indexed i = 0 … N−1 with
/// i = N−1 the noisiest. All quantities are in double precision.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// β_i of this (respaced) chain: `1 − ᾱ_i / ᾱ_{i−1}`.
    pub betas: Vec<f64>,
    /// ᾱ_i.
    pub alphas_cumprod: Vec<f64>,
    /// The original-schedule timestep fed to the model at step i.
    pub timesteps: Vec<i64>,
}

impl Schedule {
    /// The full schedule described by `kind`.
    pub fn new(kind: &BetaSchedule) -> Self {
        match *kind {
            BetaSchedule::Linear {
                beta_start,
                beta_end,
                timesteps,
            } => {
                let betas: Vec<f64> = (0..timesteps)
                    .map(|t| {
                        if timesteps == 1 {
                            beta_start
                        } else {
                            beta_start + (beta_end - beta_start) * t as f64 / (timesteps - 1) as f64
                        }
                    })
                    .collect();
                Self::from_betas(betas)
            }
        }
    }

    fn from_betas(betas: Vec<f64>) -> Self {
        let mut acc = 1.0;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        let timesteps = (0..betas.len() as i64).collect();
        Self {
            betas,
            alphas_cumprod,
            timesteps,
        }
    }

    /// Number of steps N.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    /// True for an empty schedule (never produced by the constructors).
    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// The schedule restricted to `k` timesteps evenly spaced over the original ones
    /// (always including the first and the last), with β recomputed so that the
    /// respaced chain has the same ᾱ at the kept steps (Nichol & Dhariwal 2021).
    /// `k` is clamped to 1 … N.
    pub fn respaced(&self, k: usize) -> Self {
        let n = self.len();
        let k = k.clamp(1, n);
        let keep: Vec<usize> = if k == 1 {
            vec![n - 1]
        } else {
            (0..k)
                .map(|j| ((j as f64) * (n - 1) as f64 / (k - 1) as f64).round() as usize)
                .collect()
        };
        let mut prev = 1.0;
        let mut betas = Vec::with_capacity(k);
        let mut alphas_cumprod = Vec::with_capacity(k);
        let mut timesteps = Vec::with_capacity(k);
        for &t in &keep {
            let ab = self.alphas_cumprod[t];
            betas.push(1.0 - ab / prev);
            alphas_cumprod.push(ab);
            timesteps.push(self.timesteps[t]);
            prev = ab;
        }
        Self {
            betas,
            alphas_cumprod,
            timesteps,
        }
    }

    /// ᾱ_{i−1}, with ᾱ_{−1} = 1.
    pub fn alpha_bar_prev(&self, i: usize) -> f64 {
        if i == 0 {
            1.0
        } else {
            self.alphas_cumprod[i - 1]
        }
    }

    /// Variance of the DDPM posterior q(x_{i−1} | x_i, x_0):
    /// `β̃_i = (1 − ᾱ_{i−1}) / (1 − ᾱ_i) · β_i` (zero at i = 0).
    pub fn posterior_variance(&self, i: usize) -> f64 {
        (1.0 - self.alpha_bar_prev(i)) / (1.0 - self.alphas_cumprod[i]) * self.betas[i]
    }

    /// Coefficients `(c_x0, c_xt)` of the posterior mean
    /// `μ̃_i = c_x0 · x̂_0 + c_xt · x_i`, with
    /// `c_x0 = sqrt(ᾱ_{i−1}) β_i / (1 − ᾱ_i)` and `c_xt = sqrt(α_i) (1 − ᾱ_{i−1}) / (1 − ᾱ_i)`.
    pub fn posterior_mean_coefs(&self, i: usize) -> (f64, f64) {
        let ab = self.alphas_cumprod[i];
        let ab_prev = self.alpha_bar_prev(i);
        let beta = self.betas[i];
        let c_x0 = ab_prev.sqrt() * beta / (1.0 - ab);
        let c_xt = (1.0 - beta).sqrt() * (1.0 - ab_prev) / (1.0 - ab);
        (c_x0, c_xt)
    }

    /// DDIM noise level for step i with parameter η (Song et al. 2021):
    /// `σ_i(η) = η · sqrt((1 − ᾱ_{i−1}) / (1 − ᾱ_i)) · sqrt(1 − ᾱ_i / ᾱ_{i−1})`.
    /// η = 0 is deterministic DDIM; η = 1 matches the DDPM posterior variance.
    pub fn ddim_sigma(&self, i: usize, eta: f64) -> f64 {
        let ab = self.alphas_cumprod[i];
        let ab_prev = self.alpha_bar_prev(i);
        eta * ((1.0 - ab_prev) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_prev).max(0.0).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paper() -> Schedule {
        Schedule::new(&BetaSchedule::default())
    }

    #[test]
    fn linear_schedule_values() {
        let s = paper();
        assert_eq!(s.len(), 1000);
        assert!((s.betas[0] - 1e-4).abs() < 1e-15);
        assert!((s.betas[999] - 0.02).abs() < 1e-15);
        assert!((s.betas[500] - (1e-4 + 0.0199 * 500.0 / 999.0)).abs() < 1e-15);
        assert!((s.alphas_cumprod[0] - 0.9999).abs() < 1e-15);
        // Reference values from numpy: np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)).
        assert!((s.alphas_cumprod[999] - 4.035_829_765e-5).abs() < 1e-14);
        assert!((s.alphas_cumprod[499] - 0.078_587_242_88).abs() < 1e-11);
    }

    #[test]
    fn respacing_keeps_alpha_bar() {
        let s = paper();
        let r = s.respaced(100);
        assert_eq!(r.len(), 100);
        assert_eq!(r.timesteps[0], 0);
        assert_eq!(r.timesteps[99], 999);
        for (i, &t) in r.timesteps.iter().enumerate() {
            assert!((r.alphas_cumprod[i] - s.alphas_cumprod[t as usize]).abs() < 1e-15);
        }
        // The respaced chain's betas reproduce ᾱ by the same product.
        let prod: f64 = r.betas.iter().map(|b| 1.0 - b).product();
        assert!((prod - s.alphas_cumprod[999]).abs() < 1e-12);
        let same = s.respaced(1000);
        assert_eq!(same.timesteps, s.timesteps);
        for (a, b) in same.betas.iter().zip(&s.betas) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn posterior_quantities() {
        let s = paper();
        assert_eq!(s.posterior_variance(0), 0.0);
        // With η = 1 the DDIM sigma equals the DDPM posterior standard deviation.
        for i in [1, 10, 500, 999] {
            let d = s.ddim_sigma(i, 1.0).powi(2) - s.posterior_variance(i);
            assert!(d.abs() < 1e-12, "step {i}: {d}");
        }
        // The posterior mean is exact for x_t built from x_0 with zero noise along
        // the way: with x_t = sqrt(ᾱ_t) x_0, μ̃ = sqrt(ᾱ_{t−1}) x_0.
        for i in [1, 300, 999] {
            let (a, b) = s.posterior_mean_coefs(i);
            let mean = a + b * s.alphas_cumprod[i].sqrt();
            assert!((mean - s.alpha_bar_prev(i).sqrt()).abs() < 1e-12);
        }
    }
}
