//! Training is deterministic for a seed, and a run resumed from its checkpoint ends
//! with exactly the weights of an uninterrupted run, dropout included.

use dps_recon::phantom::{PhantomFamily, PhantomStyle};
use dps_recon::prior::train::{train, TrainConfig, TrainingData};
use dps_recon::prior::{BetaSchedule, IntensityMap, ModelCard, Precision, Prior, UNetConfig};
use tch::{Device, Tensor};

fn config(out: &std::path::Path, steps: u64) -> TrainConfig {
    TrainConfig {
        name: "tiny".into(),
        description: "test".into(),
        data_description: "MR phantoms".into(),
        command: "test".into(),
        out_dir: out.to_path_buf(),
        image_size: 16,
        // Dropout draws its masks from libtorch's generator: exercised here so
        // that resuming must restore that stream too.
        architecture: UNetConfig {
            dropout: 0.1,
            ..UNetConfig::tiny(1)
        },
        schedule: BetaSchedule::default(),
        intensity: IntensityMap {
            unit: "MR".into(),
            physical_min: 0.0,
            physical_max: 1.0,
            reference_p999: None,
        },
        steps,
        batch_size: 2,
        learning_rate: 1e-3,
        ema_decay: 0.9,
        seed: 11,
        checkpoint_every: 2,
        log_every: 1,
        device: Device::Cpu,
        precision: Default::default(),
        validation_images: 0,
    }
}

/// `train` seeds libtorch's global generator for the initial weights: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn weights(dir: &std::path::Path) -> Vec<(String, Tensor)> {
    let mut w = Tensor::read_safetensors(dir.join("tiny.safetensors")).unwrap();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

/// A fresh folder with a checkpoint of step 2 of `config`, the phantom data, and
/// the lock that `train` needs, held.
fn two_steps() -> (
    std::sync::MutexGuard<'static, ()>,
    tempfile::TempDir,
    TrainingData,
) {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let data = TrainingData::Phantoms(PhantomFamily::of(PhantomStyle::Mr));
    train(&config(dir.path(), 2), &data, &mut |_| {}).unwrap();
    (serial, dir, data)
}

/// The error of a run of `cfg` that must be refused.
fn refused(cfg: &TrainConfig, data: &TrainingData) -> String {
    let result = train(cfg, data, &mut |_| {});
    format!("{:#}", result.err().expect("must be refused"))
}

#[test]
fn resumed_run_matches_uninterrupted_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    let data = TrainingData::Phantoms(PhantomFamily::of(PhantomStyle::Mr));
    let straight = tempfile::tempdir().unwrap();
    let mut losses = Vec::new();
    train(&config(straight.path(), 4), &data, &mut |p| {
        losses.push(p.loss)
    })
    .unwrap();
    assert_eq!(losses.len(), 4);
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0));

    let resumed = tempfile::tempdir().unwrap();
    let first = train(&config(resumed.path(), 2), &data, &mut |_| {}).unwrap();
    assert_eq!(first.step, 2);
    let second = train(&config(resumed.path(), 4), &data, &mut |_| {}).unwrap();
    assert_eq!(second.step, 4);

    let (a, b) = (weights(straight.path()), weights(resumed.path()));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after resuming");
    }
    // The loss log has one line per step across both stretches.
    let log = std::fs::read_to_string(resumed.path().join("loss.csv")).unwrap();
    assert_eq!(log.lines().count(), 1 + 4);

    // The card records the run and loads as a prior.
    let card = ModelCard::read(&second.card_path).unwrap();
    let record = card.training.as_ref().unwrap();
    assert_eq!(record.steps, 4);
    assert_eq!(record.seed, 11);
    let prior = Prior::load(&second.card_path, Device::Cpu, Precision::F32).unwrap();
    let x = Tensor::zeros([1, 1, 16, 16], (tch::Kind::Float, Device::Cpu));
    let eps = prior.model.eps(&x, &Tensor::from_slice(&[10i64]));
    assert_eq!(eps.size(), [1, 1, 16, 16]);
}

/// The loss of each step of a run of `cfg`.
fn losses_of(cfg: &TrainConfig, data: &TrainingData) -> Vec<f64> {
    let mut losses = Vec::new();
    train(cfg, data, &mut |p| losses.push(p.loss)).unwrap();
    losses
}

#[test]
fn bf16_training_keeps_f32_masters_and_resumes_exactly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    let data = TrainingData::Phantoms(PhantomFamily::of(PhantomStyle::Mr));
    let bf16 = |dir: &std::path::Path, steps| TrainConfig {
        precision: Precision::Bf16,
        ..config(dir, steps)
    };
    let (f32_dir, straight, resumed) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let reference = losses_of(&config(f32_dir.path(), 4), &data);
    let losses = losses_of(&bf16(straight.path(), 4), &data);
    // Same batches, same initial weights: bf16 rounding moves the loss a little,
    // and does move it (the network did run in bf16), from step 2 on: the zero
    // output layer makes step 1's ε̂ = 0 in any precision.
    for (a, b) in reference.iter().zip(&losses) {
        assert!(
            (a - b).abs() < 0.02 * a,
            "f32 {reference:?} vs bf16 {losses:?}"
        );
    }
    assert_eq!(reference[0], losses[0]);
    assert!(reference[1..].iter().zip(&losses[1..]).all(|(a, b)| a != b));

    losses_of(&bf16(resumed.path(), 2), &data);
    losses_of(&bf16(resumed.path(), 4), &data);
    let (a, b) = (weights(straight.path()), weights(resumed.path()));
    for ((na, ta), (_, tb)) in a.iter().zip(&b) {
        // Master weights, their EMA and the files stay in f32.
        assert_eq!(ta.kind(), tch::Kind::Float, "{na}");
        assert!(ta.equal(tb), "{na} differs after resuming in bf16");
    }
    let info = std::fs::read_to_string(resumed.path().join("checkpoint.json")).unwrap();
    assert!(info.contains(r#""precision": "bf16""#), "{info}");

    // An f32 checkpoint may go on in bf16, as the data may change: the weights mean
    // the same; the checkpoint then records the new stretch's precision.
    losses_of(&bf16(f32_dir.path(), 6), &data);
    let info = std::fs::read_to_string(f32_dir.path().join("checkpoint.json")).unwrap();
    assert!(info.contains(r#""step": 6"#) && info.contains(r#""precision": "bf16""#));
}

/// Five distinct 20×20 training images (MR phantoms).
fn five_images() -> Vec<Tensor> {
    (0..5)
        .map(|seed| PhantomFamily::of(PhantomStyle::Mr).sample(20, seed))
        .collect()
}

#[test]
fn validation_images_are_held_out_and_scored_at_every_checkpoint() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    let images = five_images();
    let with_validation = |dir: &std::path::Path, steps| TrainConfig {
        validation_images: 2,
        ..config(dir, steps)
    };
    let (straight, resumed, without) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let data = TrainingData::Images(images.iter().map(Tensor::shallow_clone).collect());
    let mut reports = Vec::new();
    let summary = train(&with_validation(straight.path(), 4), &data, &mut |p| {
        reports.push((p.step, p.validation))
    })
    .unwrap();
    // Progress after each logged step, and again after each validation.
    let steps: Vec<u64> = reports.iter().map(|r| r.0).collect();
    assert_eq!(steps, [1, 2, 2, 3, 4, 4]);
    assert_eq!(reports[1].1, None);
    assert_eq!(reports[3].1.map(|v| v.0), Some(2));

    // Images 1 and 3 of 5 are held out: training on the other three alone gives
    // the same weights.
    let rest = [0, 2, 4]
        .iter()
        .map(|&i| images[i].shallow_clone())
        .collect();
    train(
        &config(without.path(), 4),
        &TrainingData::Images(rest),
        &mut |_| {},
    )
    .unwrap();
    for ((na, ta), (_, tb)) in weights(straight.path())
        .iter()
        .zip(&weights(without.path()))
    {
        assert!(ta.equal(tb), "{na}: held-out images were trained on");
    }

    // A line per checkpoint (every 2 steps); the card holds the last.
    let log = std::fs::read_to_string(straight.path().join("val_loss.csv")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert_eq!(lines[0], "step,val_loss");
    assert!(
        lines[1].starts_with("2,") && lines[2].starts_with("4,"),
        "{log}"
    );
    let last: f64 = lines[2].split(',').nth(1).unwrap().parse().unwrap();
    let card = ModelCard::read(&summary.card_path).unwrap();
    let v = card.training.unwrap().validation.unwrap();
    assert_eq!((v.images, v.held_out.clone()), (2, vec![1, 3]));
    assert_eq!(
        v.timesteps,
        [50, 150, 250, 350, 450, 550, 650, 750, 850, 950]
    );
    assert!(
        (v.loss - last).abs() < 1e-6 && v.loss > 0.0,
        "{} vs {last}",
        v.loss
    );
    assert_eq!(reports[5].1, Some((4, v.loss)));

    // Resumed: the same scores on the same inputs.
    train(&with_validation(resumed.path(), 2), &data, &mut |_| {}).unwrap();
    train(&with_validation(resumed.path(), 4), &data, &mut |_| {}).unwrap();
    let again = std::fs::read_to_string(resumed.path().join("val_loss.csv")).unwrap();
    assert_eq!(again, log);

    // Holding out every image is refused before anything is written.
    let empty = tempfile::tempdir().unwrap();
    let all = TrainConfig {
        validation_images: 5,
        ..config(&empty.path().join("out"), 2)
    };
    let err = refused(&all, &data);
    assert!(err.contains("cannot hold out 5 of 5"), "{err}");
    assert!(!empty.path().join("out").exists());
}

#[test]
fn phantom_validation_scores_fixed_unseen_phantoms() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = TrainingData::Phantoms(PhantomFamily::of(PhantomStyle::Mr));
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        validation_images: 3,
        ..config(dir.path(), 2)
    };
    let summary = train(&cfg, &data, &mut |_| {}).unwrap();
    let v = ModelCard::read(&summary.card_path)
        .unwrap()
        .training
        .unwrap()
        .validation
        .unwrap();
    assert_eq!(v.images, 3);
    assert_eq!(v.held_out.len(), 3);
    assert!(v.held_out.windows(2).all(|w| w[1] == w[0] + 1));
    // Exact in JSON readers that hold numbers as doubles.
    assert!(v.held_out[2] < 1 << 53, "{:?}", v.held_out);
    let text = std::fs::read_to_string(&summary.card_path).unwrap();
    let doubles: Vec<f64> = serde_json::from_str::<serde_json::Value>(&text).unwrap()["training"]
        ["validation"]["held_out"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    assert_eq!(
        doubles.iter().map(|&d| d as u64).collect::<Vec<_>>(),
        v.held_out
    );
    assert!(v.loss.is_finite() && v.loss > 0.0);
}

#[test]
fn checkpoint_with_another_seed_is_refused() {
    let (_serial, dir, data) = two_steps();
    let mut other = config(dir.path(), 4);
    other.seed = 12;
    let err = refused(&other, &data);
    assert!(
        err.contains("checkpoint.json") && err.contains("seed 11"),
        "{err}"
    );
}

#[test]
fn torn_checkpoint_is_detected() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let data = TrainingData::Phantoms(PhantomFamily::of(PhantomStyle::Mr));
    let adam = dir.path().join("checkpoint-adam.safetensors");
    train(&config(dir.path(), 2), &data, &mut |_| {}).unwrap();
    let old = std::fs::read(&adam).unwrap();
    train(&config(dir.path(), 4), &data, &mut |_| {}).unwrap();
    // A kill between the two tensor files leaves the Adam moments of step 2.
    std::fs::write(&adam, old).unwrap();
    let err = train(&config(dir.path(), 6), &data, &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("torn") && err.contains("checkpoint-adam"),
        "{err}"
    );
}

/// A checkpoint continues only with the network and the units it was made with:
/// another architecture or intensity range is refused, naming the field (before,
/// another architecture panicked inside libtorch, and another unit went on
/// training the same weights on other data under a card for that unit). A
/// checkpoint from before these were recorded is still checked by its tensors.
#[test]
fn checkpoint_for_another_network_or_unit_is_refused() {
    let (_serial, dir, data) = two_steps();
    let error = |cfg: &TrainConfig| refused(cfg, &data);

    let mut wider = config(dir.path(), 4);
    wider.architecture.base_channels = 16;
    let err = error(&wider);
    assert!(
        err.contains("checkpoint.json: checkpoint was made with architecture")
            && err.contains("\"base_channels\":8")
            && err.contains("(--arch)"),
        "{err}"
    );
    let mut hu = config(dir.path(), 4);
    (hu.intensity.unit, hu.intensity.physical_min) = ("HU".into(), -1000.0);
    let err = error(&hu);
    assert!(
        err.contains("checkpoint was made for MR in [0, 1], not HU in [-1000, 1]"),
        "{err}"
    );

    // The checkpoint.json of earlier versions: step, seconds, loss and seed only.
    let info = dir.path().join("checkpoint.json");
    let mut old: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&info).unwrap()).unwrap();
    old.retain(|k, _| ["step", "seconds", "last_loss", "seed"].contains(&k.as_str()));
    std::fs::write(&info, serde_json::to_string(&old).unwrap()).unwrap();
    let err = error(&wider);
    assert!(
        err.contains("the checkpoint's model tensors do not fit the network")
            && err.contains("of another shape (conv_in.bias [8] (network [16])"),
        "{err}"
    );
    let resumed = train(&config(dir.path(), 4), &data, &mut |_| {}).unwrap();
    assert_eq!(resumed.step, 4);
}

/// A loss that turns non-finite stops training before the update, naming the step
/// and the checkpoint to resume from, which still resumes (with a usable rate).
#[test]
fn diverging_training_stops_and_its_checkpoint_resumes() {
    let (_serial, dir, data) = two_steps();
    let mut wild = config(dir.path(), 8);
    wild.learning_rate = 1e30;
    let err = refused(&wild, &data);
    assert!(
        err.contains("the loss is") && err.contains("the last checkpoint, of step"),
        "{err}"
    );
    let resumed = train(&config(dir.path(), 8), &data, &mut |_| {}).unwrap();
    assert_eq!(resumed.step, 8);
    assert!(resumed.final_loss.is_finite());
    let card = ModelCard::read(&resumed.card_path).unwrap();
    assert!(card.training.unwrap().final_loss.is_finite());
}
