//! Field tools that run the edge runtime instead of libtorch, so they work without the `train`
//! feature: `rsim quantize` (PTQ int8 / f16 from a float `.rsm`) and `rsim eval` (scores what ships).

pub mod bias_correct;
pub mod eval;
pub mod images;
pub mod quantize;

/// Refuses a model whose one inference needs more than `limit` multiply-accumulates (a board's
/// compute budget, `--max-macs`); returns the count. `what` names the model in the error.
pub fn check_macs(model: &rsim_model::Model<'_>, limit: Option<u64>, what: &str) -> Result<u64, String> {
    let macs = model.macs().map_err(|e| format!("{what}: {e}"))?;
    match limit {
        Some(max) if macs > max => Err(format!(
            "{what}: one inference needs {macs} multiply-accumulates, over --max-macs {max}; nothing written"
        )),
        _ => Ok(macs),
    }
}
