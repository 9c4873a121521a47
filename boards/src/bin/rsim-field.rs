//! `rsim-field`: the field tools without libtorch: flash a model to a board, run a ground station.

use clap::{Parser, Subcommand};
use rsim_boards::field::{
    run_confirm, run_flash, run_ground, run_keygen, run_sign, run_verify, ConfirmArgs, FlashArgs, GroundArgs,
    KeygenArgs, SignArgs, VerifyArgs,
};

#[derive(Parser)]
#[command(name = "rsim-field", version, about = "rsim field tools: flash models to boards, receive telemetry")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Flash a .rsm model over a serial port or TCP (resumable; the board verifies, then swaps).
    Flash(FlashArgs),
    /// Confirm the model on trial on a board (it then survives resets; unconfirmed, a reset reverts it).
    Confirm(ConfirmArgs),
    /// Decode telemetry live into a table; write CSV and a class-map PNG.
    Ground(GroundArgs),
    /// Generate an Ed25519 key pair for signing models (secret file mode 0600; never printed).
    Keygen(KeygenArgs),
    /// Sign a .rsm with a model version; boards with keys accept only signed models.
    Sign(SignArgs),
    /// Check a signed model's signature, version and model as a board would.
    Verify(VerifyArgs),
}

fn main() {
    let cli = Cli::parse();
    let res = match &cli.cmd {
        Cmd::Flash(a) => run_flash(a).map(|_| ()),
        Cmd::Confirm(a) => run_confirm(a).map(|_| ()),
        Cmd::Ground(a) => run_ground(a).map(|_| ()),
        Cmd::Keygen(a) => run_keygen(a).map(|_| ()),
        Cmd::Sign(a) => run_sign(a).map(|_| ()),
        Cmd::Verify(a) => run_verify(a).map(|_| ()),
    };
    if let Err(e) = res {
        eprintln!("rsim-field: {e}");
        std::process::exit(1);
    }
}
