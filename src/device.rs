//! Parsing of the `--device auto|cpu|cuda[:N]` option into a `tch::Device`.

use std::str::FromStr;

/// The compute device the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA device 0 when `tch::Cuda::is_available()`, otherwise the CPU.
    #[default]
    Auto,
    Cpu,
    /// A CUDA device by index.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => Err(format!(
                    "unknown device '{s}': expected auto, cpu, cuda or cuda:N"
                )),
            },
        }
    }
}

impl DeviceChoice {
    /// Resolves the choice to a device, failing when CUDA was asked for explicitly
    /// but is not there (or the index is out of range).
    pub fn resolve(self) -> Result<tch::Device, String> {
        match self {
            Self::Cpu => Ok(tch::Device::Cpu),
            Self::Auto => Ok(tch::Device::cuda_if_available()),
            Self::Cuda(n) => {
                let count = if tch::Cuda::is_available() {
                    tch::Cuda::device_count() as usize
                } else {
                    0
                };
                if n < count {
                    Ok(tch::Device::Cuda(n))
                } else {
                    Err(format!(
                        "CUDA device {n} requested but {count} CUDA device(s) are available"
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        assert_eq!("auto".parse::<DeviceChoice>(), Ok(DeviceChoice::Auto));
        assert_eq!("CPU".parse::<DeviceChoice>(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(3)));
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert!("gpu".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn cpu_always_resolves() {
        assert_eq!(DeviceChoice::Cpu.resolve(), Ok(tch::Device::Cpu));
        assert!(DeviceChoice::Cuda(99).resolve().is_err());
    }
}
