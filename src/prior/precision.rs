//! The floating-point format the prior network computes in (`--precision`).
//!
//! The sampler itself always works in f32: x_t, Tweedie's x̂₀, the operator, the
//! likelihood and the update. Only the network's weights and activations change
//! format; its input is cast on the way in and ε̂ back to f32 on the way out, so
//! the gradient ∇ₓ of the data term reaches the f32 leaf x_t through the casts.
//!
//! bf16 keeps f32's exponent range with an 8-bit significand (relative rounding
//! 2⁻⁹ ≈ 0.2 %). On CPUs with AVX512-BF16 or AMX and on CUDA GPUs of compute
//! capability ≥ 8.0 it runs the network faster than f32; elsewhere libtorch
//! emulates it and it is slower. docs/priors.md ('Precision') has the measured
//! speed and PSNR.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The number format of the prior network's weights and activations; in files
/// (a training checkpoint), its `--precision` text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// IEEE single precision, as the priors were trained.
    #[default]
    F32,
    /// bfloat16: f32's 8 exponent bits, 7 explicit significand bits.
    Bf16,
}

impl Precision {
    /// The libtorch element kind of the network's tensors.
    pub fn kind(self) -> Kind {
        match self {
            Self::F32 => Kind::Float,
            Self::Bf16 => Kind::BFloat16,
        }
    }

    /// The network's input for `x`: `x` as given in f32 (a network built in
    /// another kind, as the f64 one of the sampler's gradient test, runs in it),
    /// else `x` cast to this precision.
    pub fn cast_in(self, x: &Tensor) -> Tensor {
        match self {
            Self::F32 => x.shallow_clone(),
            Self::Bf16 => x.to_kind(self.kind()),
        }
    }

    /// The network's output `out` for the input `x`, back in `x`'s kind (as
    /// returned in f32).
    pub fn cast_out(self, out: Tensor, x: &Tensor) -> Tensor {
        match self {
            Self::F32 => out,
            Self::Bf16 => out.to_kind(x.kind()),
        }
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            _ => Err(format!("unknown precision '{s}': expected f32 or bf16")),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_both_formats() {
        for (text, p) in [
            ("f32", Precision::F32),
            ("Float32", Precision::F32),
            ("bf16", Precision::Bf16),
            ("BFLOAT16", Precision::Bf16),
        ] {
            assert_eq!(text.parse::<Precision>(), Ok(p));
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
            // Files hold the same text.
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{p}\""));
            assert_eq!(serde_json::from_str::<Precision>(&json).unwrap(), p);
        }
        assert_eq!(Precision::Bf16.kind(), Kind::BFloat16);
        let err = "fp16".parse::<Precision>().unwrap_err();
        assert!(err.contains("'fp16'") && err.contains("bf16"), "{err}");
    }
}
