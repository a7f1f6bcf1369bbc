//! Digital phantoms: the modified Shepp–Logan head phantom (Toft) and seeded
//! random-ellipse phantoms.
//!
//! Coordinates: the image covers [−1, 1]² with x to the right (columns) and y up
//! (row 0 is the top, y = +1). Pixel values are sampled at pixel centres.

use tch::Tensor;

/// One ellipse: additive intensity, semi-axes (a along x', b along y'), centre,
/// and rotation of the x' axis from the x axis in degrees, counter-clockwise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ellipse {
    pub intensity: f64,
    pub a: f64,
    pub b: f64,
    pub x0: f64,
    pub y0: f64,
    pub phi_deg: f64,
}

/// The ten ellipses of the modified Shepp–Logan phantom (Toft, 1996), as in
/// MATLAB's `phantom('Modified Shepp-Logan')`: background 0, skull 1.0, brain 0.2.
pub const MODIFIED_SHEPP_LOGAN: [Ellipse; 10] = [
    e(1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    e(-0.8, 0.6624, 0.8740, 0.0, -0.0184, 0.0),
    e(-0.2, 0.1100, 0.3100, 0.22, 0.0, -18.0),
    e(-0.2, 0.1600, 0.4100, -0.22, 0.0, 18.0),
    e(0.1, 0.2100, 0.2500, 0.0, 0.35, 0.0),
    e(0.1, 0.0460, 0.0460, 0.0, 0.1, 0.0),
    e(0.1, 0.0460, 0.0460, 0.0, -0.1, 0.0),
    e(0.1, 0.0460, 0.0230, -0.08, -0.605, 0.0),
    e(0.1, 0.0230, 0.0230, 0.0, -0.606, 0.0),
    e(0.1, 0.0230, 0.0460, 0.06, -0.605, 0.0),
];

const fn e(intensity: f64, a: f64, b: f64, x0: f64, y0: f64, phi_deg: f64) -> Ellipse {
    Ellipse {
        intensity,
        a,
        b,
        x0,
        y0,
        phi_deg,
    }
}

/// Rasterises a sum of ellipses on an `n × n` grid over [−1, 1]², one sample per
/// pixel centre. Returns row-major values (row 0 at y = +1).
pub fn rasterize(ellipses: &[Ellipse], n: usize) -> Vec<f32> {
    let mut img = vec![0f64; n * n];
    let coord = |k: usize| (2.0 * k as f64 + 1.0) / n as f64 - 1.0;
    for el in ellipses {
        let (s, c) = el.phi_deg.to_radians().sin_cos();
        for row in 0..n {
            let y = -coord(row) - el.y0;
            for col in 0..n {
                let x = coord(col) - el.x0;
                let u = (x * c + y * s) / el.a;
                let v = (-x * s + y * c) / el.b;
                if u * u + v * v <= 1.0 {
                    img[row * n + col] += el.intensity;
                }
            }
        }
    }
    img.into_iter().map(|v| v as f32).collect()
}

/// The modified Shepp–Logan phantom at `n × n` as an `f32` tensor `[n, n]` on the
/// CPU, values in [0, 1].
pub fn shepp_logan(n: usize) -> Tensor {
    to_tensor(rasterize(&MODIFIED_SHEPP_LOGAN, n), n)
}

fn to_tensor(values: Vec<f32>, n: usize) -> Tensor {
    Tensor::from_slice(&values).reshape([n as i64, n as i64])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shepp_logan_values() {
        let p = shepp_logan(256);
        assert_eq!(p.size(), [256, 256]);
        let v = |r: i64, c: i64| p.double_value(&[r, c]);
        assert_eq!(v(0, 0), 0.0); // outside the skull
        assert!((v(128, 128) - 0.2).abs() < 1e-6); // brain (between the small ellipses)
        assert!((v(128, 41) - 1.0).abs() < 1e-6); // skull at the left edge
        assert!((p.max().double_value(&[]) - 1.0).abs() < 1e-6);
        assert!(p.min().double_value(&[]) > -1e-6); // 1 − 0.8 − 0.2 rounds to −6e-17
    }
}
