//! A real PACS takes what dps-recon reads and writes: the bundled sample data
//! (raw k-space and sinogram, Raw Data Storage) and the output series (DPS, the
//! posterior standard deviation, the baselines) of one `dps-recon run` of both
//! with an MR and a CT preset are sent to a
//! fresh Orthanc (Debian `orthanc`) by DICOM C-STORE (dcmtk's `storescu`). Then,
//! through Orthanc's REST API:
//! - every file is stored, and comes back in its transfer syntax with the same
//!   elements and values (the file meta group, which names the program that
//!   wrote the file, and the encoded lengths of sequences are DCMTK's); the raw
//!   files retrieved read as the measurements that were sent;
//! - each output series sits in its input's study, beside the raw series, and
//!   Orthanc orders its slices as a volume by their geometry;
//! - Orthanc's own decoder and its reading of RescaleSlope/Intercept (CT) or of
//!   the Real World Value Mapping (MR) give the values that dps-recon's reader
//!   gives, and Orthanc renders the MR images with their window without
//!   saturating them.
//!
//! Needs `Orthanc` and `storescu` (make system-deps); with DPS_SKIP_EXTERNAL=1 the
//! test is skipped where they are missing.

mod dicom_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dicom_core::header::Header;
use dicom_core::value::Value as DicomValue;
use dicom_object::{open_file, InMemDicomObject};
use dps_recon::dicom::{read_image, read_raw, ReadLimits};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `.dcm` files under `dir`, recursively, in name order.
fn dcm_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(dcm_files(&path));
        } else if path.extension().is_some_and(|e| e == "dcm") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The Orthanc executable, or `None` (skipped) where it is missing and
/// DPS_SKIP_EXTERNAL=1.
fn orthanc_binary() -> Option<PathBuf> {
    let found = ["/usr/sbin/Orthanc", "/usr/bin/Orthanc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| {
            Command::new("Orthanc")
                .arg("--version")
                .output()
                .ok()
                .map(|_| PathBuf::from("Orthanc"))
        });
    let storescu = Command::new("storescu").arg("--version").output().is_ok();
    match found {
        Some(path) if storescu => Some(path),
        _ if dicom_support::skip_external() => {
            eprintln!("skipping: Orthanc or storescu missing, and DPS_SKIP_EXTERNAL=1");
            None
        }
        _ => panic!(
            "this test needs Orthanc (Debian orthanc) and storescu (dcmtk); install them \
             (make system-deps) or set DPS_SKIP_EXTERNAL=1"
        ),
    }
}

/// A free TCP port on the loopback interface (free when this returns).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private Orthanc on loopback ports, with its database in a temporary
/// folder; killed when dropped.
struct Orthanc {
    child: Child,
    http_port: u16,
    dicom_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Orthanc {
    fn start(binary: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (http_port, dicom_port) = (free_port(), free_port());
        let db = dir.path().join("db");
        let config = serde_json::json!({
            "Name": "dps-recon-test",
            "StorageDirectory": db,
            "IndexDirectory": db,
            "DicomAet": "ORTHANC",
            "DicomPort": dicom_port,
            "HttpPort": http_port,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "DicomCheckCalledAet": false,
            "StorageCompression": false,
            "Plugins": [],
        });
        let config_path = dir.path().join("orthanc.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = dir.path().join("orthanc.log");
        let child = Command::new(binary)
            .arg(&config_path)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let orthanc = Self {
            child,
            http_port,
            dicom_port,
            log,
            _dir: dir,
        };
        let started = Instant::now();
        while orthanc.try_get("/system").is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "Orthanc did not answer within 60 s:\n{}",
                orthanc.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        orthanc
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The body of `GET path` when it answers 200.
    fn try_get(&self, path: &str) -> Option<Vec<u8>> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n\r\n"
        )
        .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok()?;
        let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&response[..split]);
        head.lines()
            .next()
            .is_some_and(|status| status.split_whitespace().nth(1) == Some("200"))
            .then(|| response[split + 4..].to_vec())
    }

    fn get(&self, path: &str) -> Vec<u8> {
        self.try_get(path)
            .unwrap_or_else(|| panic!("GET {path} failed:\n{}", self.log_text()))
    }

    fn get_json(&self, path: &str) -> Value {
        serde_json::from_slice(&self.get(path)).unwrap()
    }

    /// Sends the `.dcm` files under `dirs` by C-STORE; fails on any error.
    fn store(&self, dirs: &[&Path]) {
        let out = Command::new("storescu")
            .args(["-aec", "ORTHANC", "+sd", "+r", "+sp", "*.dcm"])
            .arg("127.0.0.1")
            .arg(self.dicom_port.to_string())
            .args(dirs)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.lines().any(|l| l.starts_with("E:")),
            "storescu failed:\n{stderr}\n{}",
            self.log_text()
        );
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 2-step copy in `dir` of the fast `preset` that also writes the posterior
/// standard deviation (2 samples).
fn fast_copy(preset: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("pipelines").join(format!("{preset}.toml")))
        .unwrap()
        .replace(
            "card = \"../",
            &format!("card = \"{}/", root().to_str().unwrap()),
        )
        .replace("steps = 100", "steps = 2")
        .replace("samples = 1", "samples = 2")
        .replace("iterations = 1000", "iterations = 20")
        .replace("uncertainty = false", "uncertainty = true");
    let preset_path = dir.join(format!("{preset}-pacs.toml"));
    std::fs::write(&preset_path, text).unwrap();
    preset_path
}

/// One `dps-recon run` of the `raw` folders into `out` with an MR and a CT
/// preset, as a PACS-side script would run it; returns each series folder by
/// input folder.
fn reconstruct(raw: &[PathBuf], presets: [&Path; 2], out: &Path) -> Vec<PathBuf> {
    let result = Command::new(env!("CARGO_BIN_EXE_dps-recon"))
        .args(["--device", "cpu", "-q", "run", "--json", "-o"])
        .arg(out)
        .args(presets.iter().flat_map(|p| [Path::new("-p"), p]))
        .args(raw)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&result.stdout).unwrap_or(Value::Null);
    assert_eq!(
        result.status.code(),
        Some(0),
        "{summary:#}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let series = summary["series"].as_array().unwrap();
    assert_eq!(series.len(), raw.len(), "{summary:#}");
    raw.iter()
        .map(|dir| {
            let raw = read_raw(&dcm_files(dir)[0], ReadLimits::default()).unwrap();
            let done = series
                .iter()
                .find(|s| s["series_instance_uid"] == raw.context.series_instance_uid)
                .unwrap();
            PathBuf::from(done["dir"].as_str().unwrap())
        })
        .collect()
}

/// Whether two data sets hold the same elements (tag, VR, value), recursively;
/// the encoded lengths of sequences (defined or undefined) do not count.
fn same_data_set(a: &InMemDicomObject, b: &InMemDicomObject) -> bool {
    a.iter().count() == b.iter().count()
        && a.iter().zip(b.iter()).all(|(x, y)| {
            x.tag() == y.tag()
                && x.vr() == y.vr()
                && match (x.value(), y.value()) {
                    (DicomValue::Primitive(p), DicomValue::Primitive(q)) => p == q,
                    (DicomValue::Sequence(s), DicomValue::Sequence(t)) => {
                        s.items().len() == t.items().len()
                            && s.items()
                                .iter()
                                .zip(t.items())
                                .all(|(i, j)| same_data_set(i, j))
                    }
                    (DicomValue::PixelSequence(s), DicomValue::PixelSequence(t)) => {
                        s.offset_table() == t.offset_table() && s.fragments() == t.fragments()
                    }
                    _ => false,
                }
        })
}

/// The values of a NumPy `.npy` file of 16-bit integers (format 1.0, little
/// endian, `<u2` or `<i2`).
fn npy_16bit(bytes: &[u8]) -> Vec<f64> {
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not a .npy file");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + header_len]);
    let signed = header.contains("'descr': '<i2'");
    assert!(signed || header.contains("'descr': '<u2'"), "{header}");
    bytes[10 + header_len..]
        .chunks_exact(2)
        .map(|c| {
            let c = [c[0], c[1]];
            if signed {
                f64::from(i16::from_le_bytes(c))
            } else {
                f64::from(u16::from_le_bytes(c))
            }
        })
        .collect()
}

#[test]
fn orthanc_stores_the_inputs_and_outputs_and_decodes_the_same_pixels() {
    let Some(binary) = orthanc_binary() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let raw_dirs: Vec<PathBuf> = ["mri-brain-4x", "ct-shepp-logan-sparse"]
        .iter()
        .map(|case| root().join("sample_data").join(case).join("raw"))
        .collect();
    let presets = [
        fast_copy("mri-cartesian-4x-fast", work.path()),
        fast_copy("ct-sparse-view-fast", work.path()),
    ];
    let series_dirs = reconstruct(
        &raw_dirs,
        [&presets[0], &presets[1]],
        &work.path().join("out"),
    );

    let orthanc = Orthanc::start(&binary);
    let mut sent: Vec<&Path> = raw_dirs.iter().map(PathBuf::as_path).collect();
    sent.extend(series_dirs.iter().map(PathBuf::as_path));
    orthanc.store(&sent);

    // Every file, by SOPInstanceUID, with Orthanc's ID and its series and study.
    let files: Vec<PathBuf> = sent.iter().flat_map(|d| dcm_files(d)).collect();
    let instances = orthanc.get_json("/instances?expand");
    let by_uid: BTreeMap<String, (String, String)> = instances
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["MainDicomTags"]["SOPInstanceUID"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                (
                    i["ID"].as_str().unwrap().to_owned(),
                    i["ParentSeries"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(by_uid.len(), files.len(), "instances stored");

    let mut decoded = 0;
    for file in &files {
        let obj = open_file(file).unwrap();
        let uid = obj
            .element_by_name("SOPInstanceUID")
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_owned();
        let (id, _) = by_uid
            .get(&uid)
            .unwrap_or_else(|| panic!("{} ({uid}) is not in Orthanc", file.display()));
        let back_path = work.path().join("back.dcm");
        std::fs::write(&back_path, orthanc.get(&format!("/instances/{id}/file"))).unwrap();
        let back = open_file(&back_path).unwrap();
        assert_eq!(
            back.meta().transfer_syntax(),
            obj.meta().transfer_syntax(),
            "{}",
            file.display()
        );
        assert!(
            same_data_set(&back, &obj),
            "{} comes back from Orthanc changed",
            file.display()
        );
        if raw_dirs.iter().any(|d| file.starts_with(d)) {
            // Raw data archived in a PACS and retrieved reads as it was written.
            assert_eq!(
                read_raw(&back_path, ReadLimits::default()).unwrap(),
                read_raw(file, ReadLimits::default()).unwrap(),
                "{}",
                file.display()
            );
            continue;
        }
        // Orthanc's decoder against dps-recon's: the stored values as Orthanc
        // decodes them, rescaled by the slope and intercept as Orthanc reads
        // them. (Orthanc 1.10's `numpy?rescale=true` rounds its result to whole
        // numbers, useless for MR intensities in [0, 1].)
        let ours = read_image(file, ReadLimits::default()).unwrap();
        let ours = &ours.frames[0].pixels;
        let stored = npy_16bit(&orthanc.get(&format!("/instances/{id}/numpy?rescale=false")));
        let tags = orthanc.get_json(&format!("/instances/{id}/simplified-tags"));
        let number = |name: &str| -> f64 {
            tags[name]
                .as_str()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("{}: {name} in Orthanc: {}", file.display(), tags[name]))
        };
        // CT: the Modality LUT; MR: the Real World Value Mapping.
        let (slope, intercept) = if tags.get("RescaleSlope").is_some() {
            (number("RescaleSlope"), number("RescaleIntercept"))
        } else {
            let map = &tags["RealWorldValueMappingSequence"][0];
            let value = |name: &str| -> f64 {
                map[name]
                    .as_str()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or_else(|| panic!("{}: {name} in Orthanc: {map}", file.display()))
            };
            (
                value("RealWorldValueSlope"),
                value("RealWorldValueIntercept"),
            )
        };
        assert_eq!(stored.len(), ours.len(), "{}", file.display());
        let range = ours.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        let worst = ours
            .iter()
            .zip(&stored)
            .map(|(a, v)| (f64::from(*a) - (v * slope + intercept)).abs())
            .fold(0f64, f64::max);
        assert!(
            worst <= 1e-6 * f64::from(range),
            "{}: Orthanc decodes values up to {worst} away (range {range})",
            file.display()
        );
        // Orthanc renders with the file's window: an MR image whose window were
        // in intensities while Orthanc applies it to stored values (the MR IOD
        // has no Modality LUT) would come out white.
        if tags["Modality"] == "MR" {
            let png = orthanc.get(&format!("/instances/{id}/rendered"));
            let rendered = image::load_from_memory(&png).unwrap().to_luma8();
            let white = rendered.pixels().filter(|p| p.0[0] == 255).count();
            let fraction = white as f64 / (rendered.width() * rendered.height()) as f64;
            assert!(
                fraction <= 0.05,
                "{}: Orthanc renders {:.0} % of it white",
                file.display(),
                100.0 * fraction
            );
        }
        decoded += 1;
    }
    // 3 MR slices × 4 kinds (dps, uncertainty, zero-filled, cg-sense) and one
    // CT slice × 4 (dps, uncertainty, fbp, tv).
    assert_eq!(decoded, 16);

    // Each reconstruction sits in its input's study, one series per kind beside
    // the raw series.
    for (raw, out) in raw_dirs.iter().zip(&series_dirs) {
        let series_of = |dir: &Path| -> BTreeSet<String> {
            dcm_files(dir)
                .iter()
                .map(|f| {
                    let obj = open_file(f).unwrap();
                    let uid = obj.element_by_name("SOPInstanceUID").unwrap();
                    by_uid[uid.to_str().unwrap().trim_end_matches('\0')]
                        .1
                        .clone()
                })
                .collect()
        };
        let raw_series = series_of(raw);
        assert_eq!(raw_series.len(), 1);
        let raw_series = raw_series.into_iter().next().unwrap();
        let study = orthanc.get_json(&format!("/series/{raw_series}"))["ParentStudy"]
            .as_str()
            .unwrap()
            .to_owned();
        let in_study: BTreeSet<String> = orthanc.get_json(&format!("/studies/{study}"))["Series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        let mut expected = series_of(out);
        assert_eq!(expected.len(), 4, "{}", out.display());
        // Orthanc orders the slices of a series by their geometry (a volume),
        // monotonic along the normal.
        for series in &expected {
            let ordered = orthanc.get_json(&format!("/series/{series}/ordered-slices"));
            let ids: Vec<&str> = ordered["SlicesShort"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s[0].as_str().unwrap())
                .collect();
            if ids.len() < 2 {
                continue;
            }
            assert_eq!(ordered["Type"], "Volume", "{ordered:#}");
            let z: Vec<f64> = ids
                .iter()
                .map(|id| {
                    let tags = orthanc.get_json(&format!("/instances/{id}/simplified-tags"));
                    let position = tags["ImagePositionPatient"].as_str().unwrap();
                    position.split('\\').nth(2).unwrap().parse().unwrap()
                })
                .collect();
            let steps: Vec<f64> = z.windows(2).map(|w| w[1] - w[0]).collect();
            assert!(
                steps.iter().all(|d| *d > 0.0) || steps.iter().all(|d| *d < 0.0),
                "Orthanc's slice order: z = {z:?}"
            );
        }
        expected.insert(raw_series);
        assert_eq!(in_study, expected, "{}", out.display());
    }
}
