//! The built-in ε-prediction UNet (DDPM style: sinusoidal time embedding, residual
//! blocks with group norm, optional self-attention at chosen levels).
//!
//! Fully convolutional: any input size works; inputs whose sides are not multiples
//! of 2^(levels − 1) are reflect-padded up to one and the output is cropped back.
//! Input `x`: f32 `[B, in_channels, H, W]` in the model's range ([−1, 1]);
//! `t`: i64 `[B]` timesteps of the original schedule. Output: ε̂ of the shape of `x`
//! with `out_channels` channels.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Architecture hyper-parameters; stored in the model card so that the weights can
/// be loaded into the same network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    pub in_channels: i64,
    pub out_channels: i64,
    /// Channels at the first level; level l has `base_channels · channel_mults[l]`.
    pub base_channels: i64,
    pub channel_mults: Vec<i64>,
    /// Residual blocks per level on the way down (one more on the way up).
    pub num_res_blocks: usize,
    /// Levels (0 = full resolution) with self-attention after each residual block.
    pub attention_levels: Vec<usize>,
    /// Groups of every group norm; must divide every channel count.
    pub groups: i64,
    pub dropout: f64,
}

impl UNetConfig {
    /// A small network for tests: two levels, 8 base channels.
    pub fn tiny(channels: i64) -> Self {
        Self {
            in_channels: channels,
            out_channels: channels,
            base_channels: 8,
            channel_mults: vec![1, 2],
            num_res_blocks: 1,
            attention_levels: vec![1],
            groups: 4,
            dropout: 0.0,
        }
    }

    /// Whether a network can be built and run with this configuration; the error
    /// says which field is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.in_channels < 1 || self.out_channels != self.in_channels {
            return Err(format!(
                "architecture: in_channels ({}) must be ≥ 1 and out_channels ({}) equal to it",
                self.in_channels, self.out_channels
            ));
        }
        if self.base_channels < 2 || self.base_channels % 2 != 0 {
            return Err(format!(
                "architecture: base_channels ({}) must be even and ≥ 2 (the time embedding \
                 is half cosines, half sines)",
                self.base_channels
            ));
        }
        if self.channel_mults.is_empty()
            || self.channel_mults.len() > 8
            || self.channel_mults.iter().any(|&m| m < 1)
        {
            return Err(format!(
                "architecture: channel_mults {:?} must hold 1 to 8 levels, each ≥ 1",
                self.channel_mults
            ));
        }
        if self.num_res_blocks < 1 {
            return Err("architecture: num_res_blocks must be ≥ 1".into());
        }
        if let Some(l) = self
            .attention_levels
            .iter()
            .find(|&&l| l >= self.channel_mults.len())
        {
            return Err(format!(
                "architecture: attention level {l} does not exist (levels 0…{})",
                self.channel_mults.len() - 1
            ));
        }
        let widths = std::iter::once(1)
            .chain(self.channel_mults.iter().copied())
            .map(|m| m * self.base_channels);
        if self.groups < 1 || widths.clone().any(|c| c % self.groups != 0) {
            return Err(format!(
                "architecture: groups ({}) must divide every level's channel count {:?}",
                self.groups,
                widths.collect::<Vec<_>>()
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "architecture: dropout ({}) must lie in [0, 1)",
                self.dropout
            ));
        }
        Ok(())
    }

    /// Activation values that one forward pass keeps for its backward pass, per
    /// pixel of the input image, counted layer by layer as this network runs them:
    /// a residual block from c_in to c_out channels keeps 3 c_in + 3 c_out (group
    /// norm, SiLU and convolution inputs on both halves), an attention of c
    /// channels 7 c (norm, qkv, q k v and the output, projection, sum), a
    /// down- or upsampling convolution its input; a level l below the input holds
    /// 4⁻ˡ of its pixels. The input's padding to a multiple of 2^(levels − 1) is
    /// not counted.
    pub fn saved_values_per_pixel(&self) -> f64 {
        let area = |l: usize| 0.25f64.powi(l as i32);
        let res = |c_in: i64, c_out: i64, l: usize| 3.0 * (c_in + c_out) as f64 * area(l);
        let attn = |c: i64, l: usize| 7.0 * c as f64 * area(l);
        let base = self.base_channels;
        let levels = self.channel_mults.len();
        // conv_in's input; norm_out, SiLU and conv_out at the end.
        let mut total = self.in_channels as f64 + 3.0 * base as f64;
        let mut skips = vec![base];
        let mut ch = base;
        for (l, &mult) in self.channel_mults.iter().enumerate() {
            let c_out = base * mult;
            for _ in 0..self.num_res_blocks {
                total += res(ch, c_out, l);
                ch = c_out;
                skips.push(ch);
                if self.attention_levels.contains(&l) {
                    total += attn(ch, l);
                }
            }
            if l + 1 < levels {
                skips.push(ch);
                total += ch as f64 * area(l);
            }
        }
        let deepest = levels - 1;
        total += 2.0 * res(ch, ch, deepest) + attn(ch, deepest);
        for (l, &mult) in self.channel_mults.iter().enumerate().rev() {
            let c_out = base * mult;
            for _ in 0..=self.num_res_blocks {
                let skip = skips.pop().expect("one skip per down block");
                total += res(ch + skip, c_out, l);
                ch = c_out;
                if self.attention_levels.contains(&l) {
                    total += attn(ch, l);
                }
            }
            if l > 0 {
                total += ch as f64 * area(l - 1);
            }
        }
        total
    }

    /// Bytes of memory that one `h × w` image in `kind` takes at least through a
    /// forward pass that keeps its graph and the backward pass: the saved values
    /// at the padded size. The peak memory per image measured for four networks,
    /// sizes 128² to 512² and both precisions was 1.03–1.43 times this, the least
    /// at 512² (docs/BENCHMARKS.md, 'Sampling memory per image'; `make bench`).
    pub fn pass_bytes(&self, h: i64, w: i64, kind: Kind) -> u64 {
        let m = 1i64 << (self.channel_mults.len() - 1);
        let pad = |n: i64| (n + m - 1) / m * m;
        let values = self.saved_values_per_pixel() * (pad(h) * pad(w)) as f64;
        (values * kind.elt_size_in_bytes() as f64) as u64
    }

    /// The configuration of the shipped 128² priors, sized for CPU training
    /// (≈ 1.1 M parameters, ≈ 1.2 GMAC per 128² forward pass).
    pub fn small(channels: i64) -> Self {
        Self {
            in_channels: channels,
            out_channels: channels,
            base_channels: 16,
            channel_mults: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            attention_levels: vec![3],
            groups: 8,
            dropout: 0.0,
        }
    }
}

/// Sinusoidal embedding of timesteps `t` `[B]` into `[B, dim]` of `kind` (Vaswani et al.).
pub fn timestep_embedding(t: &Tensor, dim: i64, kind: Kind) -> Tensor {
    let half = dim / 2;
    let freqs = (Tensor::arange(half, (kind, t.device())) * (-(10000f64.ln()) / half as f64)).exp();
    let args = t.to_kind(kind).unsqueeze(1) * freqs.unsqueeze(0);
    Tensor::cat(&[args.cos(), args.sin()], 1)
}

#[derive(Debug)]
struct ResBlock {
    norm1: nn::GroupNorm,
    conv1: nn::Conv2D,
    temb: nn::Linear,
    norm2: nn::GroupNorm,
    conv2: nn::Conv2D,
    skip: Option<nn::Conv2D>,
    dropout: f64,
}

fn conv3(vs: nn::Path, c_in: i64, c_out: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        padding: 1,
        ..Default::default()
    };
    nn::conv2d(vs, c_in, c_out, 3, cfg)
}

fn zero_conv(vs: nn::Path, c_in: i64, c_out: i64, k: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        padding: k / 2,
        ws_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(vs, c_in, c_out, k, cfg)
}

impl ResBlock {
    fn new(vs: &nn::Path, c_in: i64, c_out: i64, temb_dim: i64, cfg: &UNetConfig) -> Self {
        let gn = Default::default();
        Self {
            norm1: nn::group_norm(vs / "norm1", cfg.groups, c_in, gn),
            conv1: conv3(vs / "conv1", c_in, c_out),
            temb: nn::linear(vs / "temb", temb_dim, c_out, Default::default()),
            norm2: nn::group_norm(vs / "norm2", cfg.groups, c_out, gn),
            conv2: zero_conv(vs / "conv2", c_out, c_out, 3),
            skip: (c_in != c_out)
                .then(|| nn::conv2d(vs / "skip", c_in, c_out, 1, Default::default())),
            dropout: cfg.dropout,
        }
    }

    fn forward(&self, x: &Tensor, temb: &Tensor, train: bool) -> Tensor {
        let h = self.conv1.forward(&self.norm1.forward(x).silu());
        let h = h + self.temb.forward(&temb.silu()).unsqueeze(-1).unsqueeze(-1);
        let h = self.norm2.forward(&h).silu().dropout(self.dropout, train);
        let h = self.conv2.forward(&h);
        match &self.skip {
            Some(s) => s.forward(x) + h,
            None => x + h,
        }
    }
}

#[derive(Debug)]
struct Attention {
    norm: nn::GroupNorm,
    qkv: nn::Conv2D,
    proj: nn::Conv2D,
}

impl Attention {
    fn new(vs: &nn::Path, c: i64, cfg: &UNetConfig) -> Self {
        Self {
            norm: nn::group_norm(vs / "norm", cfg.groups, c, Default::default()),
            qkv: nn::conv2d(vs / "qkv", c, 3 * c, 1, Default::default()),
            proj: zero_conv(vs / "proj", c, c, 1),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().expect("attention input must be 4-D");
        let qkv = self
            .qkv
            .forward(&self.norm.forward(x))
            .reshape([b, 3, c, h * w]);
        // One head of [B, 1, HW, C]: query i takes softmax_j(q_i · k_j / √C) of the
        // values. libtorch's fused attention never holds the HW × HW weights (at
        // 256² with attention at 128², the explicit product kept 7.3 GB per image).
        // Contiguous along C: the fused kernel needs a unit stride in the last
        // dimension (else libtorch falls back to the explicit product).
        let qkv = qkv.permute([1, 0, 3, 2]).contiguous();
        let heads = |i: i64| qkv.get(i).unsqueeze(1);
        let out = Tensor::scaled_dot_product_attention(
            &heads(0),
            &heads(1),
            &heads(2),
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        let out = out.squeeze_dim(1).transpose(1, 2).reshape([b, c, h, w]);
        x + self.proj.forward(&out)
    }
}

#[derive(Debug)]
struct Block {
    res: ResBlock,
    attn: Option<Attention>,
}

impl Block {
    fn forward(&self, x: &Tensor, temb: &Tensor, train: bool) -> Tensor {
        let h = self.res.forward(x, temb, train);
        match &self.attn {
            Some(a) => a.forward(&h),
            None => h,
        }
    }
}

/// The ε-prediction UNet.
#[derive(Debug)]
pub struct UNet {
    config: UNetConfig,
    temb1: nn::Linear,
    temb2: nn::Linear,
    conv_in: nn::Conv2D,
    /// Per level: its blocks, then an optional strided-conv downsampler.
    down: Vec<(Vec<Block>, Option<nn::Conv2D>)>,
    mid: (ResBlock, Attention, ResBlock),
    /// Per level from the deepest: its blocks, then an optional upsampling conv.
    up: Vec<(Vec<Block>, Option<nn::Conv2D>)>,
    norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl UNet {
    /// Builds the network's variables under `vs`.
    pub fn new(vs: &nn::Path, config: &UNetConfig) -> Self {
        let cfg = config;
        let base = cfg.base_channels;
        let temb_dim = 4 * base;
        let levels = cfg.channel_mults.len();
        let conv_in = conv3(vs / "conv_in", cfg.in_channels, base);

        let mut skips = vec![base];
        let mut ch = base;
        let mut down = Vec::with_capacity(levels);
        for (l, &mult) in cfg.channel_mults.iter().enumerate() {
            let p = vs / "down" / l;
            let c_out = base * mult;
            let blocks = (0..cfg.num_res_blocks)
                .map(|i| {
                    let res = ResBlock::new(&(&p / "res" / i), ch, c_out, temb_dim, cfg);
                    ch = c_out;
                    skips.push(ch);
                    let attn = cfg
                        .attention_levels
                        .contains(&l)
                        .then(|| Attention::new(&(&p / "attn" / i), ch, cfg));
                    Block { res, attn }
                })
                .collect();
            let sample = (l + 1 < levels).then(|| {
                skips.push(ch);
                let c = nn::ConvConfig {
                    stride: 2,
                    padding: 1,
                    ..Default::default()
                };
                nn::conv2d(&p / "downsample", ch, ch, 3, c)
            });
            down.push((blocks, sample));
        }

        let mid = (
            ResBlock::new(&(vs / "mid" / "res1"), ch, ch, temb_dim, cfg),
            Attention::new(&(vs / "mid" / "attn"), ch, cfg),
            ResBlock::new(&(vs / "mid" / "res2"), ch, ch, temb_dim, cfg),
        );

        let mut up = Vec::with_capacity(levels);
        for (l, &mult) in cfg.channel_mults.iter().enumerate().rev() {
            let p = vs / "up" / l;
            let c_out = base * mult;
            let blocks = (0..=cfg.num_res_blocks)
                .map(|i| {
                    let skip = skips.pop().expect("one skip per down block");
                    let res = ResBlock::new(&(&p / "res" / i), ch + skip, c_out, temb_dim, cfg);
                    ch = c_out;
                    let attn = cfg
                        .attention_levels
                        .contains(&l)
                        .then(|| Attention::new(&(&p / "attn" / i), ch, cfg));
                    Block { res, attn }
                })
                .collect();
            let sample = (l > 0).then(|| conv3(&p / "upsample", ch, ch));
            up.push((blocks, sample));
        }

        Self {
            config: config.clone(),
            temb1: nn::linear(vs / "temb1", base, temb_dim, Default::default()),
            temb2: nn::linear(vs / "temb2", temb_dim, temb_dim, Default::default()),
            conv_in,
            down,
            mid,
            up,
            norm_out: nn::group_norm(vs / "norm_out", cfg.groups, ch, Default::default()),
            conv_out: zero_conv(vs / "conv_out", ch, cfg.out_channels, 3),
        }
    }

    /// The architecture this network was built with.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// ε̂(x, t); `train` enables dropout.
    pub fn forward_t(&self, x: &Tensor, t: &Tensor, train: bool) -> Tensor {
        let (_, _, height, width) = x.size4().expect("UNet input must be [B, C, H, W]");
        let m = 1i64 << (self.config.channel_mults.len() - 1);
        let (ph, pw) = ((m - height % m) % m, (m - width % m) % m);
        let padded = if ph > 0 || pw > 0 {
            x.pad([0, pw, 0, ph], "replicate", None)
        } else {
            x.shallow_clone()
        };

        let temb = timestep_embedding(t, self.config.base_channels, x.kind());
        let temb = self.temb2.forward(&self.temb1.forward(&temb).silu());

        let mut hs = vec![self.conv_in.forward(&padded)];
        for (blocks, sample) in &self.down {
            for b in blocks {
                let h = b.forward(hs.last().expect("non-empty"), &temb, train);
                hs.push(h);
            }
            if let Some(s) = sample {
                let h = s.forward(hs.last().expect("non-empty"));
                hs.push(h);
            }
        }
        let mut h = hs.last().expect("non-empty").shallow_clone();
        h = self.mid.0.forward(&h, &temb, train);
        h = self.mid.1.forward(&h);
        h = self.mid.2.forward(&h, &temb, train);
        for (blocks, sample) in &self.up {
            for b in blocks {
                let skip = hs.pop().expect("one skip per up block");
                h = b.forward(&Tensor::cat(&[h, skip], 1), &temb, train);
            }
            if let Some(s) = sample {
                h = s.forward(&h.upsample_nearest2d(
                    [2 * h.size()[2], 2 * h.size()[3]],
                    None,
                    None,
                ));
            }
        }
        let out = self.conv_out.forward(&self.norm_out.forward(&h).silu());
        if ph > 0 || pw > 0 {
            out.narrow(2, 0, height).narrow(3, 0, width)
        } else {
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Other sizes: the input is padded (replicate) to a multiple of the
    /// downsampling factor and the output cropped back, so the output at 13 × 21
    /// is the top-left crop of the output at the padded 14 × 22. The weights are
    /// perturbed first (a fresh network's output layer is zero), so that the
    /// output and its dependence on t are not trivially zero.
    #[test]
    fn runs_at_other_sizes_and_keeps_the_shape() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = UNet::new(&vs.root(), &UNetConfig::tiny(1));
        tch::no_grad(|| {
            for (_, mut v) in vs.variables() {
                let _ = v.g_add_(&(v.randn_like() * 0.1));
            }
        });
        let t = Tensor::from_slice(&[0i64, 999]);
        for (h, w) in [(16, 16), (13, 21), (1, 7)] {
            let x = Tensor::randn([1, 1, h, w], (Kind::Float, Device::Cpu)).repeat([2, 1, 1, 1]);
            let eps = net.forward_t(&x, &t, false);
            assert_eq!(eps.size(), [2, 1, h, w]);
            assert!(eps.isfinite().all().int64_value(&[]) == 1);
            // The same image at t = 0 and t = 999 gives different ε̂.
            let scale = eps.abs().mean(Kind::Float).double_value(&[]);
            let by_t = (eps.get(0) - eps.get(1))
                .abs()
                .mean(Kind::Float)
                .double_value(&[]);
            assert!(
                scale > 1e-3 && by_t > 0.05 * scale,
                "{h}×{w}: |ε̂| {scale}, Δt {by_t}"
            );
            if (h, w) == (13, 21) {
                let padded = x.pad([0, 1, 0, 1], "replicate", None);
                let full = net.forward_t(&padded, &t, false);
                let crop = full.narrow(2, 0, h).narrow(3, 0, w);
                let err = (&eps - crop).abs().max().double_value(&[]);
                assert!(err < 1e-5, "crop of the padded output: {err}");
            }
        }
    }

    /// The fused attention computes what the explicit softmax(QᵀK / √C) product
    /// did (the shipped priors were trained with that), value and gradient.
    #[test]
    fn fused_attention_matches_the_explicit_product() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let attn = Attention::new(&vs.root(), 8, &UNetConfig::tiny(1));
        tch::no_grad(|| {
            for (_, mut v) in vs.variables() {
                let _ = v.g_add_(&(v.randn_like() * 0.3));
            }
        });
        let explicit = |x: &Tensor| {
            let (b, c, h, w) = x.size4().unwrap();
            let qkv = attn
                .qkv
                .forward(&attn.norm.forward(x))
                .reshape([b, 3, c, h * w]);
            let (q, k, v) = (qkv.select(1, 0), qkv.select(1, 1), qkv.select(1, 2));
            let weights = (q.transpose(1, 2).matmul(&k) / (c as f64).sqrt()).softmax(-1, x.kind());
            let out = v.matmul(&weights.transpose(1, 2)).reshape([b, c, h, w]);
            x + attn.proj.forward(&out)
        };
        let x = Tensor::randn([2, 8, 6, 5], (Kind::Float, Device::Cpu));
        let grad = |f: &dyn Fn(&Tensor) -> Tensor| {
            let xi = x.detach().set_requires_grad(true);
            let y = f(&xi);
            let g = Tensor::run_backward(&[(&y * &y).sum(Kind::Float)], &[&xi], false, false);
            (y.detach(), g[0].shallow_clone())
        };
        let (fused, fused_grad) = grad(&|x| attn.forward(x));
        let (reference, reference_grad) = grad(&explicit);
        let max = |t: Tensor| t.abs().max().double_value(&[]);
        assert!(max(&fused - &reference) < 1e-5 * max(reference.shallow_clone()));
        assert!(max(&fused_grad - &reference_grad) < 1e-4 * max(reference_grad));
        // Not trivially equal: the attention changes its input.
        assert!(max(fused - &x) > 0.1);
    }

    /// The tiny network counted by hand: conv_in's input 1 and the output's 3 · 8;
    /// level 0: a block 8→8 (48) and the downsampler's input (8); level 1 (¼ of
    /// the pixels): a block 8→16 (18) with attention (28); the middle 2 · 24 + 28;
    /// up at level 1: blocks 32→16 (36) and 24→16 (30), each with attention, and
    /// the upsampler's input at full size (16); up at level 0: blocks 24→8 (96)
    /// and 16→8 (72).
    #[test]
    fn saved_values_are_counted_per_layer() {
        let by_hand = 1.0
            + 24.0
            + 48.0
            + 8.0
            + 18.0
            + 28.0
            + 76.0
            + 36.0
            + 28.0
            + 30.0
            + 28.0
            + 16.0
            + 96.0
            + 72.0;
        assert_eq!(UNetConfig::tiny(1).saved_values_per_pixel(), by_hand);
        assert_eq!(by_hand, 509.0);
        // The shipped priors' network (docs/BENCHMARKS.md, 'Sampling memory').
        assert_eq!(UNetConfig::small(1).saved_values_per_pixel(), 1350.0);
    }

    #[test]
    fn time_embedding_separates_timesteps() {
        let e = timestep_embedding(&Tensor::from_slice(&[0i64, 1, 500]), 16, Kind::Double);
        assert_eq!(e.size(), [3, 16]);
        // t = 0: cos terms 1, sin terms 0.
        assert!(
            (e.get(0).narrow(0, 0, 8) - 1.0)
                .abs()
                .max()
                .double_value(&[])
                < 1e-12
        );
        assert!(e.get(0).narrow(0, 8, 8).abs().max().double_value(&[]) < 1e-12);
        let d = (e.get(1) - e.get(2)).norm().double_value(&[]);
        assert!(d > 1.0, "embeddings of t = 1 and t = 500 too close: {d}");
    }
}
