//! `flash`: send a model to a board over serial or TCP, with progress, resume and a clear verdict.

use super::link::{open, read_some, LinkArgs};
use crate::flash::host::{Outcome, Sender, SenderConfig};
use crate::wire::{encode, FlashErrorCode, FrameReader, Msg, MAX_CHUNK, MAX_FRAME};
use clap::Args;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Flash a model to a board's inactive slot; the board verifies it and only then switches.
#[derive(Args, Clone, Debug)]
pub struct FlashArgs {
    #[command(flatten)]
    pub link: LinkArgs,
    /// The `.rsm` model to flash.
    #[arg(long)]
    pub model: PathBuf,
    /// Largest chunk in bytes (16..=1024; shrinks by itself on a noisy link).
    #[arg(long, default_value_t = MAX_CHUNK as u32)]
    pub chunk: u32,
    /// Unacknowledged bytes in flight.
    #[arg(long, default_value_t = 4 * MAX_CHUNK as u32)]
    pub window: u32,
    /// Milliseconds without progress before resending.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Resends without progress before giving up.
    #[arg(long, default_value_t = 20)]
    pub retries: u32,
    /// Send even if the model does not decode on this host (to test the board's checks).
    #[arg(long)]
    pub no_local_check: bool,
}

/// What a refusal means for the user.
pub fn explain(code: FlashErrorCode) -> &'static str {
    match code {
        FlashErrorCode::TooLarge => "the model is larger than the board's model slot",
        FlashErrorCode::NoTransfer => "the board lost the transfer",
        FlashErrorCode::HashMismatch => {
            "the image stored on the board does not match its SHA-256 (link or flash corruption)"
        }
        FlashErrorCode::BadModel => "the board could not decode the model (or it has no test vector)",
        FlashErrorCode::WrongBoard => "the model needs more arena or input memory than this board has",
        FlashErrorCode::SelfTestFailed => "the model's test vector gave a different output on the board",
        FlashErrorCode::Storage => "the board's flash storage failed",
        FlashErrorCode::Incomplete => "the board did not receive the whole image",
        FlashErrorCode::Unsigned => "the board accepts only signed models: sign it with `rsim sign`",
        FlashErrorCode::BadSignature => {
            "the signature does not verify with the board's keys (wrong key, modified or truncated image)"
        }
        FlashErrorCode::Rollback => {
            "the model's signed version is below the board's security counter (an older model): sign it with a \
             higher --version"
        }
        FlashErrorCode::TrialPending => {
            "a model is on trial on the board: confirm it (`rsim confirm`) or reset the board (which reverts it) first"
        }
        FlashErrorCode::NotActive => "the model named in the confirm is not the board's active model",
    }
}

/// Runs a transfer. Ok: the new model is active. Err: a message saying why; the old model stays.
pub fn run_flash(args: &FlashArgs) -> Result<Outcome, String> {
    let image = std::fs::read(&args.model).map_err(|e| format!("cannot read {}: {e}", args.model.display()))?;
    if !args.no_local_check {
        let img = crate::flash::sign::split(&image).map_err(|e| format!("{}: {e}", args.model.display()))?;
        rsim_model::Model::parse(img.rsm())
            .map_err(|e| format!("{} is not a valid model: {e}", args.model.display()))?;
    }
    let sha: [u8; 32] = Sha256::digest(&image).into();
    let cfg = SenderConfig {
        chunk: args.chunk,
        window: args.window,
        timeout_us: args.timeout_ms * 1000,
        max_retries: args.retries,
    };
    let mut link = open(&args.link, Duration::from_millis(5))?;
    let mut sender = Sender::new(&image, sha, cfg);
    let mut reader: FrameReader = FrameReader::new();
    let (mut out, mut inbuf) = ([0u8; MAX_FRAME], [0u8; 4096]);
    let t0 = Instant::now();
    let mut last_pct = u32::MAX;
    link.write_all(&[0]).map_err(|e| format!("link write failed: {e}"))?; // flush a half frame on the board
    let outcome = loop {
        let now = t0.elapsed().as_micros() as u64;
        while let Some(msg) = sender.poll(now) {
            let n = encode(&msg, &mut out).map_err(|e| e.to_string())?;
            link.write_all(&out[..n]).map_err(|e| format!("link write failed: {e}"))?;
        }
        if let Some(o) = sender.outcome() {
            break o;
        }
        let n = read_some(link.as_mut(), &mut inbuf)?;
        let now = t0.elapsed().as_micros() as u64;
        for &b in &inbuf[..n] {
            if let Some(Ok(m)) = reader.push(b) {
                sender.on_msg(&m, now);
            }
        }
        let (acked, size) = sender.progress();
        let pct = (acked as u64 * 100 / size.max(1) as u64) as u32;
        if pct / 5 != last_pct / 5 {
            last_pct = pct;
            let secs = t0.elapsed().as_secs_f64().max(1e-3);
            eprintln!("flash: {pct:3}% ({acked}/{size} bytes, {:.1} KiB/s)", acked as f64 / 1024.0 / secs);
        }
    };
    match outcome {
        Outcome::Done { slot, seq } => {
            eprintln!(
                "flash: done in {:.1} s: verified and active in slot {} (boot record {seq}); {} bytes resent",
                t0.elapsed().as_secs_f64(),
                if slot == 0 { 'A' } else { 'B' },
                sender.resent_bytes
            );
            Ok(outcome)
        }
        Outcome::Refused(code) => Err(format!("board refused the model ({code:?}): {}; the previous model stays active", explain(code))),
        Outcome::Unconfirmed { .. } => Err(
            "board received the whole model and was told to activate it, but its answer never arrived: it runs \
             either the new model or the previous one. Run the same command again: an active model answers at once"
                .to_string(),
        ),
        Outcome::BoardReset { resets } => Err(format!(
            "board reset {resets} times while verifying the model (its watchdog budget ran out, or it crashed); \
             the previous model stays active"
        )),
        Outcome::TimedOut { acked } => Err(format!(
            "board stopped answering after {acked} of {} bytes; the previous model stays active. Run the same command again to resume",
            image.len()
        )),
    }
}

/// Confirm the model on trial on a board: it then stays active across resets and the board's
/// security counter rises to its signed version. Without a confirm, a board configured for trial
/// boot reverts to its previous model at the next reset.
#[derive(Args, Clone, Debug)]
pub struct ConfirmArgs {
    #[command(flatten)]
    pub link: LinkArgs,
    /// The model file that was flashed (signed or not, byte for byte): its SHA-256 names the image to
    /// confirm, so a confirm never applies to another model.
    #[arg(long)]
    pub model: PathBuf,
    /// Milliseconds to wait for the board's answer before asking again.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Times to ask again before giving up.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
}

/// Sends `FlashConfirm` for the model's SHA-256 until the board answers. Ok: (slot, boot record
/// sequence) of the confirmed model. Err: the refusal or silence, in words.
pub fn run_confirm(args: &ConfirmArgs) -> Result<(u8, u32), String> {
    let image = std::fs::read(&args.model).map_err(|e| format!("cannot read {}: {e}", args.model.display()))?;
    let sha: [u8; 32] = Sha256::digest(&image).into();
    let mut link = open(&args.link, Duration::from_millis(5))?;
    let mut reader: FrameReader = FrameReader::new();
    let (mut out, mut inbuf) = ([0u8; MAX_FRAME], [0u8; 4096]);
    let n = encode(&Msg::FlashConfirm { sha256: sha }, &mut out).map_err(|e| e.to_string())?;
    link.write_all(&[0]).map_err(|e| format!("link write failed: {e}"))?; // flush a half frame on the board
    for _ in 0..=args.retries {
        link.write_all(&out[..n]).map_err(|e| format!("link write failed: {e}"))?;
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_millis(args.timeout_ms) {
            let k = read_some(link.as_mut(), &mut inbuf)?;
            for &b in &inbuf[..k] {
                match reader.push(b) {
                    Some(Ok(Msg::FlashDone { slot, seq })) => {
                        let slot_name = if slot == 0 { 'A' } else { 'B' };
                        eprintln!("confirm: the model in slot {slot_name} is confirmed (boot record {seq})");
                        return Ok((slot, seq));
                    }
                    Some(Ok(Msg::FlashNack { code, .. })) => {
                        return Err(format!("board refused the confirm ({code:?}): {}", explain(code)));
                    }
                    _ => {}
                }
            }
        }
    }
    Err(format!(
        "board did not answer the confirm after {} tries; a model on trial stays unconfirmed (a reset reverts it)",
        args.retries + 1
    ))
}
