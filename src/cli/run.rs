//! (being written)
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_ctx: &super::Context, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
