//! Diffusion Posterior Sampling — Algorithm 1 of Chung et al. (ICLR 2023).
//!
//! ```text
//! x_N ~ N(0, I)
//! for i = N−1 … 0:
//!     ŝ      = s_θ(x_i, i)                          (here from ε̂: ŝ = −ε̂ / sqrt(1 − ᾱ_i))
//!     x̂_0    = (x_i + (1 − ᾱ_i) ŝ) / sqrt(ᾱ_i)      (Tweedie), clamped to the prior's range
//!     z      ~ N(0, I)
//!     x'_{i−1} = c_x0 x̂_0 + c_xt x_i + σ̃_i z         (ancestral DDPM step)
//!     x_{i−1}  = x'_{i−1} − ζ_i ∇_{x_i} ‖y − A(x̂_0)‖
//! return x̂_0
//! ```
//! with `c_x0 = sqrt(ᾱ_{i−1}) β_i / (1 − ᾱ_i)` and `c_xt = sqrt(α_i)(1 − ᾱ_{i−1}) / (1 − ᾱ_i)`
//! (the paper prints sqrt(ᾱ_i) for the latter; sqrt(α_i) is the DDPM posterior mean)
//! and σ̃_i² = β̃_i, the posterior variance. The gradient is that of the plain norm,
//! taken through the network; the step size is ζ_i = ζ for every i (with the plain
//! norm this equals the authors' ζ / ‖y − A(x̂_0)‖ on the squared norm).
//!
//! The fewer-step variant runs the same loop on a respaced schedule with the DDIM
//! update (η = 1 is the ancestral step of the respaced chain, η = 0 deterministic).
//! Each step starts from a detached leaf; nothing of the graph survives a step and
//! no gradient is built for the network's weights (the prior is frozen).
//!
//! The clamp of x̂_0 sits in the graph, so by default its derivative is that of
//! the clamp: zero wherever x̂_0 leaves the range (Algorithm 1 as the authors'
//! code runs it). [`ClampGradient::StraightThrough`] keeps the clamped value but
//! passes the gradient as if unclamped, at every step or above a timestep (see
//! there for why).

use tch::{Kind, Tensor};

use super::noise::ChainNoise;
use crate::prior::{EpsModel, Schedule};

/// How x'_{i−1} is drawn from x_i and x̂_0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Update {
    /// The ancestral DDPM step of Algorithm 1 (σ̃_i² = β̃_i).
    Ddpm,
    /// The DDIM step with noise level η ∈ [0, 1].
    Ddim { eta: f64 },
}

/// The derivative the guidance takes through the clamp of x̂_0 to the prior's
/// range [−1, 1].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClampGradient {
    /// The clamp's own derivative: zero where x̂_0 is out of range, so those
    /// pixels pass no guidance back to x_i (Algorithm 1 with the clamp in the
    /// graph, as in the authors' code).
    #[default]
    Exact,
    /// Straight-through at the steps whose timestep t (of the prior's 0 … T−1)
    /// exceeds `above`, at every step for `None`, exact at the others: the value
    /// is clamped, the gradient passes as if it were not. Early in the chain x̂_0
    /// is out of range nearly everywhere and the exact derivative passes no
    /// guidance at all (docs/priors.md, 'The clamp and its gradient').
    StraightThrough { above: Option<i64> },
}

impl ClampGradient {
    /// Whether the gradient passes straight through at timestep `t`.
    pub fn straight_through_at(self, t: i64) -> bool {
        match self {
            Self::Exact => false,
            Self::StraightThrough { above } => above.is_none_or(|a| t > a),
        }
    }
}

/// `exact`, `straight-through` or `straight-through:T` (above timestep T).
impl std::fmt::Display for ClampGradient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact => f.write_str("exact"),
            Self::StraightThrough { above: None } => f.write_str("straight-through"),
            Self::StraightThrough { above: Some(t) } => write!(f, "straight-through:{t}"),
        }
    }
}

impl std::str::FromStr for ClampGradient {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "unknown clamp gradient {s:?}: expected exact, straight-through or \
                 straight-through:T (T a timestep ≥ 0)"
            )
        };
        match s.split_once(':') {
            None if s == "exact" => Ok(Self::Exact),
            None if s == "straight-through" => Ok(Self::StraightThrough { above: None }),
            Some(("straight-through", t)) => match t.parse::<i64>() {
                Ok(t) if t >= 0 => Ok(Self::StraightThrough { above: Some(t) }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// `x` clamped to [−1, 1]; its gradient passes straight through when
/// `straight_through`, else it is the clamp's own (zero out of range).
pub fn clamp_to_range(x: &Tensor, straight_through: bool) -> Tensor {
    let clamped = x.clamp(-1.0, 1.0);
    if straight_through {
        x + (clamped - x).detach()
    } else {
        clamped
    }
}

/// Sampler settings.
#[derive(Clone, Debug, PartialEq)]
pub struct DpsConfig {
    /// Number of steps N; fewer than the prior's T respaces the schedule evenly.
    pub steps: usize,
    /// Guidance step size ζ.
    pub zeta: f64,
    pub update: Update,
    /// The guidance's derivative through the clamp of x̂_0.
    pub clamp_gradient: ClampGradient,
    /// Seed of x_N and of every z.
    pub seed: u64,
}

/// What one step produced.
pub struct Step {
    /// x_{i−1}, detached.
    pub x_prev: Tensor,
    /// x̂_0 from x_i, detached, in the prior's range.
    pub x0_hat: Tensor,
    /// ‖y − A(x̂_0)‖_Λ per batch element, `[B]`.
    pub distance: Tensor,
}

/// DPS with a given ε-model and (full) schedule.
pub struct DpsSampler<'a> {
    model: &'a dyn EpsModel,
    schedule: Schedule,
    config: DpsConfig,
}

impl<'a> DpsSampler<'a> {
    /// `schedule`: the prior's full schedule; it is respaced to `config.steps`.
    pub fn new(model: &'a dyn EpsModel, schedule: &Schedule, config: DpsConfig) -> Self {
        Self {
            model,
            schedule: schedule.respaced(config.steps),
            config,
        }
    }

    /// The schedule actually run.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Draws one posterior sample per batch row of `shape` (`[B, C, H, W]`, in the
    /// prior's range) for the data-fidelity distance `distance`, which maps x̂_0
    /// `[B, C, H, W]` to `‖y − A(x̂_0)‖_Λ` per row, `[B]` (it applies the map to
    /// physical units and the operator). `observe` sees every step.
    /// Returns the final x̂_0 (in the prior's range, detached).
    pub fn sample(
        &self,
        shape: &[i64],
        kind: Kind,
        device: tch::Device,
        distance: &dyn Fn(&Tensor) -> Tensor,
        observe: &mut dyn FnMut(usize, &Step),
    ) -> Tensor {
        // x_N and the z of steps N−1 … 1.
        let steps = self.schedule.len();
        let mut noise = ChainNoise::new(self.config.seed, shape, (kind, device), steps);
        let mut x = noise.next_tensor();
        let mut x0_hat = x.zeros_like();
        for i in (0..steps).rev() {
            let z = if i > 0 {
                noise.next_tensor()
            } else {
                x.zeros_like()
            };
            let step = self.step(i, &x, &z, distance);
            observe(i, &step);
            x = step.x_prev;
            x0_hat = step.x0_hat;
        }
        x0_hat
    }

    /// One iteration i of Algorithm 1 from x_i with the noise z.
    pub fn step(
        &self,
        i: usize,
        x_i: &Tensor,
        z: &Tensor,
        distance: &dyn Fn(&Tensor) -> Tensor,
    ) -> Step {
        let x_i = x_i.detach().set_requires_grad(true);
        let ab = self.schedule.alphas_cumprod[i];
        let t = Tensor::full(
            [x_i.size()[0]],
            self.schedule.timesteps[i],
            (Kind::Int64, x_i.device()),
        );

        let eps = self.model.eps(&x_i, &t);
        let through = self
            .config
            .clamp_gradient
            .straight_through_at(self.schedule.timesteps[i]);
        let x0_hat = clamp_to_range(&tweedie(&x_i, &eps, ab), through);

        let x_prime = tch::no_grad(|| self.ancestral(i, &x_i, &x0_hat, z));

        let d = distance(&x0_hat);
        let grad = Tensor::run_backward(&[d.sum(d.kind())], &[&x_i], false, false)
            .pop()
            .expect("one gradient per input");
        let x_prev = tch::no_grad(|| x_prime - grad * self.config.zeta);

        Step {
            x_prev,
            x0_hat: x0_hat.detach(),
            distance: d.detach(),
        }
    }

    /// x'_{i−1} from x_i and x̂_0 (no gradient).
    fn ancestral(&self, i: usize, x_i: &Tensor, x0_hat: &Tensor, z: &Tensor) -> Tensor {
        let s = &self.schedule;
        match self.config.update {
            Update::Ddpm => {
                let (c_x0, c_xt) = s.posterior_mean_coefs(i);
                x0_hat * c_x0 + x_i * c_xt + z * s.posterior_variance(i).sqrt()
            }
            Update::Ddim { eta } => {
                let (ab, ab_prev) = (s.alphas_cumprod[i], s.alpha_bar_prev(i));
                let sigma = s.ddim_sigma(i, eta);
                // ε consistent with the clamped x̂_0.
                let eps = (x_i - x0_hat * ab.sqrt()) / (1.0 - ab).sqrt();
                x0_hat * ab_prev.sqrt()
                    + eps * (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt()
                    + z * sigma
            }
        }
    }
}

/// Tweedie's estimate `E[x_0 | x_t] = (x_t − sqrt(1 − ᾱ) ε̂) / sqrt(ᾱ)` (the score
/// form of Algorithm 1 with ŝ = −ε̂ / sqrt(1 − ᾱ)).
pub fn tweedie(x_t: &Tensor, eps: &Tensor, alpha_bar: f64) -> Tensor {
    (x_t - eps * (1.0 - alpha_bar).sqrt()) / alpha_bar.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prior::gaussian::GaussianPrior;
    use crate::prior::{BetaSchedule, UNetConfig, UNetPrior};
    use tch::Device;

    /// ‖r‖ over all but the batch dimension of `[B, C, H, W]`, `[B]`.
    fn norm_per_row(r: &Tensor) -> Tensor {
        (r.square()
            .sum_dim_intlist(&[1i64, 2, 3][..], false, r.kind())
            + 1e-20)
            .sqrt()
    }

    fn full_schedule() -> Schedule {
        Schedule::new(&BetaSchedule::default())
    }

    #[test]
    fn tweedie_inverts_the_forward_process() {
        let x0 = Tensor::randn([2, 1, 5, 5], (Kind::Double, Device::Cpu));
        let eps = Tensor::randn([2, 1, 5, 5], (Kind::Double, Device::Cpu));
        for ab in [0.9999, 0.5, 1e-3] {
            let xt = &x0 * f64::sqrt(ab) + &eps * (1.0 - ab).sqrt();
            let err = (tweedie(&xt, &eps, ab) - &x0).abs().max().double_value(&[]);
            assert!(err < 1e-9, "ᾱ = {ab}: {err}");
        }
    }

    /// ζ = 0.5 at 1000 steps, scaled up for fewer steps (the total guidance a chain
    /// can apply grows with its length).
    fn config(steps: usize, update: Update) -> DpsConfig {
        DpsConfig {
            steps,
            zeta: 0.5 * 1000.0 / steps as f64,
            update,
            clamp_gradient: ClampGradient::Exact,
            seed: 7,
        }
    }

    /// Both derivatives clamp the value; the exact one is zero outside the range,
    /// the straight-through one is 1 everywhere. The modes parse from their names.
    #[test]
    fn clamp_gradient_modes() {
        let w = Tensor::from_slice(&[2f64, 3., 5.]);
        for (through, expect) in [(false, [0.0, 3.0, 0.0]), (true, [2.0, 3.0, 5.0])] {
            let x = Tensor::from_slice(&[-2f64, 0.5, 3.]).set_requires_grad(true);
            let y = clamp_to_range(&x, through);
            let values: Vec<f64> = Vec::try_from(&y.detach()).unwrap();
            assert_eq!(values, [-1.0, 0.5, 1.0], "{through}");
            let g = Tensor::run_backward(&[(&y * &w).sum(Kind::Double)], &[&x], false, false);
            let g: Vec<f64> = Vec::try_from(&g[0]).unwrap();
            assert_eq!(g, expect, "{through}");
        }
        let above = ClampGradient::StraightThrough { above: Some(700) };
        for (mode, at_701, at_700) in [
            (ClampGradient::Exact, false, false),
            (ClampGradient::StraightThrough { above: None }, true, true),
            (above, true, false),
        ] {
            assert_eq!(mode.straight_through_at(701), at_701, "{mode}");
            assert_eq!(mode.straight_through_at(700), at_700, "{mode}");
            assert_eq!(mode.to_string().parse::<ClampGradient>(), Ok(mode));
        }
        assert_eq!(above.to_string(), "straight-through:700");
        for bad in [
            "clip",
            "straight-through:",
            "straight-through:-1",
            "exact:3",
        ] {
            assert!(bad.parse::<ClampGradient>().is_err(), "{bad}");
        }
    }

    /// A pixel whose x̂_0 is clamped gets no guidance with the exact derivative
    /// and is pulled towards the data with straight-through; an unclamped pixel is
    /// guided alike by both.
    #[test]
    fn clamp_gradient_decides_whether_clamped_pixels_are_guided() {
        let schedule = full_schedule();
        let prior = GaussianPrior {
            mu: 0.0,
            s2: 0.25,
            schedule: schedule.clone(),
        };
        let x_i = Tensor::from_slice(&[-3f32, 0.2]).reshape([1, 1, 1, 2]);
        let z = x_i.zeros_like();
        let y = Tensor::full([1, 1, 1, 2], 0.5, (Kind::Float, Device::Cpu));
        let distance = |x0: &Tensor| norm_per_row(&(&y - x0));
        let step = |zeta: f64, clamp_gradient: ClampGradient| {
            let c = DpsConfig {
                zeta,
                clamp_gradient,
                ..config(1000, Update::Ddpm)
            };
            let s = DpsSampler::new(&prior, &schedule, c).step(100, &x_i, &z, &distance);
            let x0: Vec<f32> = Vec::try_from(s.x0_hat.flatten(0, -1)).unwrap();
            assert_eq!(x0[0], -1.0, "pixel 0 must be clamped");
            assert!(x0[1].abs() < 1.0);
            Vec::<f32>::try_from(s.x_prev.flatten(0, -1)).unwrap()
        };
        // Step i = 100 of 1000 is at timestep 100.
        let through = |above| ClampGradient::StraightThrough { above };
        let unguided = step(0.0, ClampGradient::Exact);
        let exact = step(0.5, ClampGradient::Exact);
        let st = step(0.5, through(None));
        assert_eq!(exact[0], unguided[0]);
        assert!(st[0] > unguided[0] + 0.1, "{st:?} vs {unguided:?}");
        assert!(exact[1] > unguided[1] + 0.01, "{exact:?} vs {unguided:?}");
        assert!((exact[1] - st[1]).abs() < 1e-6);
        assert_eq!(step(0.5, through(Some(99))), st);
        assert_eq!(step(0.5, through(Some(100))), exact);
    }

    /// Inpainting with the exact Gaussian prior: observed pixels end at y, the
    /// unobserved ones are draws from the prior (mean μ, spread s).
    #[test]
    fn recovers_observed_pixels_and_prior_elsewhere() {
        let schedule = full_schedule();
        let prior = GaussianPrior {
            mu: 0.2,
            s2: 0.04,
            schedule: schedule.clone(),
        };
        let mask = Tensor::from_slice(&[1f32, 0.])
            .repeat([32 * 16])
            .reshape([1, 1, 32, 32]);
        let y = &mask * 0.6;
        let distance = |x0: &Tensor| norm_per_row(&(&y - x0 * &mask));
        for update in [Update::Ddpm, Update::Ddim { eta: 1.0 }] {
            let steps = if update == Update::Ddpm { 1000 } else { 100 };
            let sampler = DpsSampler::new(&prior, &schedule, config(steps, update));
            let x = sampler.sample(
                &[1, 1, 32, 32],
                Kind::Float,
                Device::Cpu,
                &distance,
                &mut |_, _| {},
            );
            let observed = (&x * &mask).sum(Kind::Double).double_value(&[]) / 512.0;
            let hidden = &x * (mask.ones_like() - &mask);
            let hidden_mean = hidden.sum(Kind::Double).double_value(&[]) / 512.0;
            let hidden_var = (hidden.square().sum(Kind::Double).double_value(&[]) / 512.0)
                - hidden_mean * hidden_mean;
            assert!(
                (observed - 0.6).abs() < 0.02,
                "{update:?}: observed mean {observed}"
            );
            assert!(
                (hidden_mean - 0.2).abs() < 0.03,
                "{update:?}: hidden mean {hidden_mean}"
            );
            assert!(
                (hidden_var.sqrt() - 0.2).abs() < 0.05,
                "{update:?}: hidden std {}",
                hidden_var.sqrt()
            );
        }
    }

    #[test]
    fn reproducible_for_a_seed() {
        tch::manual_seed(1);
        let prior = UNetPrior::new(&UNetConfig::tiny(1), Device::Cpu);
        let schedule = full_schedule();
        let y = Tensor::ones([2, 1, 8, 8], (Kind::Float, Device::Cpu)) * 0.3;
        let distance = |x0: &Tensor| norm_per_row(&(&y - x0));
        let run = |seed| {
            let mut c = config(20, Update::Ddim { eta: 0.5 });
            c.seed = seed;
            DpsSampler::new(&prior, &schedule, c).sample(
                &[2, 1, 8, 8],
                Kind::Float,
                Device::Cpu,
                &distance,
                &mut |_, _| {},
            )
        };
        let (a, b, c) = (run(3), run(3), run(4));
        assert!(a.equal(&b), "same seed must give the same bits");
        assert!(!a.equal(&c));
    }

    /// The guidance gradient of one step equals a central finite difference of
    /// ζ · ‖y − A(x̂_0(x_i))‖ through a (tiny, double precision) network.
    #[test]
    fn step_gradient_matches_finite_differences() {
        tch::manual_seed(2);
        let mut prior = UNetPrior::new(&UNetConfig::tiny(1), Device::Cpu);
        // Non-zero output layers so the network's Jacobian matters.
        tch::no_grad(|| {
            for (_, mut v) in prior.vs.variables() {
                let _ = v.g_add_(&(v.randn_like() * 0.05));
            }
        });
        prior.vs.double();
        prior.vs.freeze();
        let schedule = full_schedule();
        let sampler = DpsSampler::new(&prior, &schedule, config(50, Update::Ddpm));
        let i = 25; // mid-chain: ᾱ ≈ 0.08, x̂_0 well inside the clamp
        let y = Tensor::randn([1, 1, 6, 6], (Kind::Double, Device::Cpu)) * 0.1;
        let a = Tensor::randn([1, 1, 6, 6], (Kind::Double, Device::Cpu));
        let distance = |x0: &Tensor| norm_per_row(&(&y - x0 * &a));
        let x_i = Tensor::randn([1, 1, 6, 6], (Kind::Double, Device::Cpu)) * 0.1;
        let z = x_i.zeros_like();
        let step = sampler.step(i, &x_i, &z, &distance);
        // Tweedie's x̂_0 at step i, before the clamp, without a graph.
        let tweedie_at = |x: &Tensor| {
            tch::no_grad(|| {
                let t = Tensor::full(
                    [1],
                    sampler.schedule().timesteps[i],
                    (Kind::Int64, Device::Cpu),
                );
                tweedie(x, &prior.eps(x, &t), sampler.schedule().alphas_cumprod[i])
            })
        };
        let (c0, ct) = sampler.schedule().posterior_mean_coefs(i);
        let x_prime = tweedie_at(&x_i).clamp(-1.0, 1.0) * c0 + &x_i * ct;
        let analytic = (x_prime - &step.x_prev) / (0.5 * 1000.0 / 50.0); // = ∇ d
        let f = |x: &Tensor| {
            tch::no_grad(|| distance(&tweedie_at(x).clamp(-1.0, 1.0)).double_value(&[0]))
        };
        let h = 1e-6;
        for k in [0i64, 7, 20, 35] {
            let e = Tensor::zeros([36], (Kind::Double, Device::Cpu))
                .index_fill(0, &Tensor::from_slice(&[k]), h)
                .reshape([1, 1, 6, 6]);
            let fd = (f(&(&x_i + &e)) - f(&(&x_i - &e))) / (2.0 * h);
            let an = analytic.flatten(0, -1).double_value(&[k]);
            // Failed once (fd −0.758897 vs −0.759235) in a debug run on a loaded
            // machine and never since; the extra numbers are for the next time.
            // Not a rare draw: this check over seeds 0…2999 in place of 2 (each a
            // different network, y, A and x_i) differed by at most 3.0e-9 relative.
            assert!(
                (fd - an).abs() < 1e-6 * (1.0 + fd.abs()),
                "pixel {k}: fd {fd} vs {an}; x̂_0 within {} of the clamp; f(x_i) = {} then {}; \
                 {} libtorch threads",
                (tweedie_at(&x_i).abs() - 1.0).abs().min().double_value(&[]),
                step.distance.double_value(&[0]),
                f(&x_i),
                tch::get_num_threads()
            );
        }
    }
}
