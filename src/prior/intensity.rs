//! The MR intensity reference shared by training and reconstruction: the 99.9th
//! percentile of each image, and the median over a set of images. Training
//! records the median over its images in the model card
//! ([`super::IntensityMap::reference_p999`]); `mri_scale = "auto"` maps the
//! median over a series' slices there.

use tch::{Kind, Tensor};

/// The 99.9th percentile (linear interpolation, as NumPy's default) of each image
/// of `images` `[N, …]`, in the images' units. By order statistics (`kthvalue`):
/// libtorch's `quantile` refuses inputs of more than 2²⁴ values, such as a large
/// series taken whole.
pub fn p999_each(images: &Tensor) -> Vec<f64> {
    let rows = images.flatten(1, -1).to_kind(Kind::Double);
    let position = 0.999 * (rows.size()[1] - 1) as f64;
    let below = position.floor();
    let (low, _) = rows.kthvalue(below as i64 + 1, 1, false);
    let q = match position - below {
        0.0 => low,
        fraction => {
            let (high, _) = rows.kthvalue(below as i64 + 2, 1, false);
            &low + (high - &low) * fraction
        }
    };
    Vec::<f64>::try_from(&q).expect("a 1-D double tensor")
}

/// The median of the positive values (images that are not empty); `None` when
/// there are none.
pub fn median_positive(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|&x| x > 0.0).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some(0.5 * (v[n / 2 - 1] + v[n / 2])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_of_each_image() {
        // 0, 1, …, 999: the 99.9th percentile lies at 0.999 · 999 = 998.001.
        let a = Tensor::arange(1000, (Kind::Float, tch::Device::Cpu)).view([1, 10, 100]);
        let two = Tensor::cat(&[&a, &(&a * 2.0)], 0);
        let q = p999_each(&two);
        assert!(
            (q[0] - 998.001).abs() < 1e-9 && (q[1] - 1996.002).abs() < 1e-9,
            "{q:?}"
        );
    }

    #[test]
    fn percentile_matches_libtorch_and_has_no_size_limit() {
        let x = Tensor::randn([3, 4097], (Kind::Double, tch::Device::Cpu)).exp();
        let torch = x.quantile_scalar(0.999, Some(1), false, "linear");
        for (ours, theirs) in p999_each(&x)
            .iter()
            .zip(Vec::<f64>::try_from(&torch).unwrap())
        {
            assert!((ours - theirs).abs() <= 1e-12 * theirs, "{ours} {theirs}");
        }
        // 2²⁴ + 7 values, more than libtorch's quantile takes (a series of 1025
        // frames of 128²): 0, 1, …, n − 1 has its percentile at 0.999 (n − 1).
        let n = (1i64 << 24) + 7;
        let q = p999_each(&Tensor::arange(n, (Kind::Float, tch::Device::Cpu)).view([1, n]));
        assert!((q[0] - 0.999 * (n - 1) as f64).abs() < 1e-6, "{q:?}");
    }

    #[test]
    fn median_leaves_out_empty_images() {
        assert_eq!(median_positive(&[3.0, 0.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_positive(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median_positive(&[0.0, -1.0]), None);
        assert_eq!(median_positive(&[]), None);
    }
}
