//! The offline arena planner against the liveness lower bound, for every builder architecture.
//!
//! The planner's bound: planned arena <= 1.10 x the largest sum of simultaneously live tensors.
//! Also checks the plan itself: no two tensors that are live at the same op overlap in the arena.

use rsim_model::arch::Arch;
use rsim_model::graph_builder::{export, ExportOptions};
use rsim_model::{Model, Op, Storage, Tensor};
use std::collections::HashMap;

const ARCHS: [Arch; 6] = [
    Arch::ResNet8,
    Arch::ResNet18,
    Arch::ResNet50,
    Arch::MobileNetV2 { width: 1.0 },
    Arch::MobileNetV2 { width: 0.35 },
    Arch::MobileNetV3Small,
];

/// (offset, len, first step, last step) per arena tensor id, recomputed from the decoded model.
fn lifetimes(model: &Model<'_>) -> HashMap<u16, (usize, usize, usize, usize)> {
    let ops: Vec<Op> = model.ops().map(|o| o.unwrap()).collect();
    let mut m: HashMap<u16, (usize, usize, usize, usize)> = HashMap::new();
    let mut touch = |t: &Tensor, step: usize| {
        if let Storage::Arena { offset } = t.storage {
            let e = m.entry(t.id).or_insert((offset as usize, t.byte_len().unwrap(), step, step));
            assert_eq!(e.0, offset as usize, "tensor {} has two offsets", t.id);
            e.3 = e.3.max(step);
        }
    };
    touch(&model.info.input, 0);
    for (s, op) in ops.iter().enumerate() {
        op.for_each_tensor(|t| touch(t, s));
    }
    touch(&model.info.output, ops.len() - 1);
    m
}

#[test]
fn planned_arena_within_10_percent_of_liveness_bound() {
    let mut worst: f64 = 0.0;
    for size in [64, 224] {
        for arch in ARCHS {
            let e = export(&ExportOptions::random(arch, 3, size, Some(10), 1)).unwrap();
            let model = Model::parse(&e.bytes).unwrap();
            let p = e.plan;
            println!(
                "{:<22} {size:>3}: arena {:>9} B, lower bound {:>9} B, ratio {:.4}",
                arch.name(),
                p.arena_size,
                p.lower_bound,
                p.ratio()
            );
            assert_eq!(model.info.arena_size as usize, p.arena_size);
            assert!(p.arena_size >= p.lower_bound, "{}: below the lower bound is impossible", arch.name());
            assert!(p.ratio() <= 1.10, "{} at {size}: arena {} > 1.10 x {}", arch.name(), p.arena_size, p.lower_bound);
            worst = worst.max(p.ratio());

            // Independent check of the placement: tensors alive at the same step never share bytes
            // (a reshape's input and output share deliberately).
            let lt = lifetimes(&model);
            let reshapes: Vec<(u16, u16)> = model
                .ops()
                .filter_map(|o| match o.unwrap() {
                    Op::Reshape { input, output } => Some((input.id, output.id)),
                    _ => None,
                })
                .collect();
            let v: Vec<_> = lt.iter().collect();
            for (i, (ida, a)) in v.iter().enumerate() {
                assert_eq!(a.0 % 16, 0, "tensor {ida} offset {} not 16-byte aligned", a.0);
                for (idb, b) in &v[i + 1..] {
                    if reshapes.contains(&(**ida, **idb)) || reshapes.contains(&(**idb, **ida)) {
                        continue;
                    }
                    // An op's inputs and its output are live at the same step (kernels are not in place).
                    let time = a.2 <= b.3 && b.2 <= a.3;
                    let space = a.0 < b.0 + b.1 && b.0 < a.0 + a.1;
                    assert!(!(time && space), "{}: tensors {ida} {a:?} and {idb} {b:?} overlap", arch.name());
                }
            }
        }
    }
    println!("worst ratio {worst:.4}");
}

#[test]
fn reshape_is_planned_in_place() {
    let e = export(&ExportOptions::random(Arch::ResNet8, 3, 32, Some(10), 3)).unwrap();
    let model = Model::parse(&e.bytes).unwrap();
    let mut seen = 0;
    for op in model.ops() {
        if let Op::Reshape { input, output } = op.unwrap() {
            assert_eq!(input.storage, output.storage);
            seen += 1;
        }
    }
    assert_eq!(seen, 1, "ResNet-8 flattens once");
}
