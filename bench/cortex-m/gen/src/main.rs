//! Host side of the Cortex-M instruction-count harness (bench/cortex-m/run.sh).
//!
//! Converts the MLPerf Tiny IC `.tflite` with `rsim_model::tflite::convert` (the converter the
//! project's int8 truth tests use) and writes, into `--out`:
//! - `ic.rsm`: the converted model, which the rsim-edge firmware embeds;
//! - `net.c`: the same network for the CMSIS-NN program: every op's parameters in TFLM/CMSIS-NN
//!   conventions, the weights, biases and per-channel multipliers/shifts of the converted model (so
//!   both sides run identical constants), one activation buffer per tensor and the input tensor;
//! - `ops.tsv`: one row per op (index, type, output tensor id, MACs, shape summary, multipliers and
//!   shifts), which run.sh checks against the model's `model_ops.json` and uses for the table.
//!
//! Usage: rsim-cortex-m-gen --tflite <model.tflite> --input <input tensor .bin> --out <dir>
use rsim_model::{Activation, Model, Multiplier, Op, Quant, Requant, Storage, Tensor};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::exit;

fn main() {
    let mut tflite = None;
    let mut input = None;
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().map(PathBuf::from);
        match a.as_str() {
            "--tflite" => tflite = v,
            "--input" => input = v,
            "--out" => out = v,
            _ => fail(&format!("unknown argument {a:?}")),
        }
    }
    let (Some(tflite), Some(input), Some(out)) = (tflite, input, out) else {
        fail("usage: rsim-cortex-m-gen --tflite <model.tflite> --input <input tensor .bin> --out <dir>")
    };
    let read = |p: &PathBuf| std::fs::read(p).unwrap_or_else(|e| fail(&format!("{}: {e}", p.display())));
    let opts = rsim_model::tflite::ConvertOptions {
        source: tflite.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        ..Default::default()
    };
    let converted =
        rsim_model::tflite::convert(&read(&tflite), &opts).unwrap_or_else(|e| fail(&format!("convert: {e}")));
    let model = Model::parse(&converted.bytes).unwrap_or_else(|e| fail(&format!("converted model: {e}")));
    let input = read(&input);
    if Some(input.len()) != model.info.input.byte_len() {
        fail(&format!("input has {} bytes, the model's input tensor {:?}", input.len(), model.info.input.byte_len()));
    }

    let mut g = Gen { model: &model, c: String::new(), ops: Vec::new(), tsv: String::new(), tensors: Vec::new() };
    for (i, op) in model.ops().enumerate() {
        let op = op.unwrap_or_else(|e| fail(&format!("op {i}: {e}")));
        g.op(i, &op);
    }
    g.finish(&input);

    std::fs::create_dir_all(&out).unwrap_or_else(|e| fail(&format!("{}: {e}", out.display())));
    let write = |name: &str, bytes: &[u8]| {
        let p = out.join(name);
        std::fs::write(&p, bytes).unwrap_or_else(|e| fail(&format!("{}: {e}", p.display())));
    };
    write("ic.rsm", &converted.bytes);
    write("net.c", g.c.as_bytes());
    write("ops.tsv", g.tsv.as_bytes());
    eprintln!(
        "gen: {} ops, arena {} B, model {} B -> {}",
        g.ops.len(),
        model.info.arena_size,
        converted.bytes.len(),
        out.display()
    );
}

struct Gen<'m> {
    model: &'m Model<'m>,
    /// Constant arrays, then the op table, of net.c.
    c: String,
    /// One C initializer per op.
    ops: Vec<String>,
    tsv: String,
    /// Activation tensors seen: (id, bytes).
    tensors: Vec<(u16, usize)>,
}

fn fail(msg: &str) -> ! {
    eprintln!("error: rsim-cortex-m-gen: {msg}");
    exit(1);
}

fn zp(t: &Tensor) -> i32 {
    match t.quant {
        Quant::PerTensor { zero_point, .. } => zero_point,
        _ => fail(&format!("tensor {} is not per-tensor quantized", t.id)),
    }
}

fn i32s(bytes: &[u8]) -> Vec<i32> {
    bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn shape(t: &Tensor) -> String {
    let [n, h, w, c] = t.shape.nhwc();
    format!("{{{n}, {h}, {w}, {c}}}")
}

fn hwc(t: &Tensor) -> String {
    let [_, h, w, c] = t.shape.nhwc();
    format!("{h}x{w}x{c}")
}

impl Gen<'_> {
    fn activation(&mut self, t: &Tensor) -> u16 {
        if !matches!(t.storage, Storage::Arena { .. }) {
            fail(&format!("tensor {} is not an activation", t.id));
        }
        let len = t.byte_len().unwrap_or_else(|| fail("tensor size overflows"));
        match self.tensors.iter().find(|(id, _)| *id == t.id) {
            Some(&(_, l)) if l != len => fail(&format!("tensor {} seen with two sizes", t.id)),
            Some(_) => {}
            None => self.tensors.push((t.id, len)),
        }
        t.id
    }

    fn array_i8(&mut self, name: &str, bytes: &[u8]) {
        let _ = write!(self.c, "static const int8_t {name}[{}] __attribute__((aligned(4))) = {{", bytes.len());
        for (i, b) in bytes.iter().enumerate() {
            let _ = write!(self.c, "{}{}", if i % 32 == 0 { "\n    " } else { " " }, *b as i8);
            self.c.push(',');
        }
        self.c.push_str("\n};\n");
    }

    fn array_i32(&mut self, name: &str, v: &[i32]) {
        let _ = write!(self.c, "static const int32_t {name}[{}] = {{", v.len());
        for (i, x) in v.iter().enumerate() {
            let _ = write!(self.c, "{}{x},", if i % 8 == 0 { "\n    " } else { " " });
        }
        self.c.push_str("\n};\n");
    }

    fn const_bytes(&self, t: &Tensor) -> &[u8] {
        self.model.const_bytes(t).unwrap_or_else(|| fail(&format!("constant tensor {} out of bounds", t.id)))
    }

    fn per_channel(&self, rq: &Requant, channels: usize) -> (Vec<i32>, Vec<i32>) {
        let (m, s) = match rq.multiplier {
            Multiplier::PerChannel { mult, shift } => (
                i32s(self.model.blob(mult).unwrap_or_else(|| fail("multiplier blob"))),
                i32s(self.model.blob(shift).unwrap_or_else(|| fail("shift blob"))),
            ),
            Multiplier::PerTensor { mult, shift } => (vec![mult; channels], vec![shift; channels]),
        };
        if m.len() != channels || s.len() != channels {
            fail("per-channel multiplier count differs from the output channels");
        }
        (m, s)
    }

    /// One ops.tsv row: index, type, output tensor id, MACs, shapes, multipliers, shifts.
    #[allow(clippy::too_many_arguments)]
    fn row(&mut self, i: usize, kind: &str, out: u16, macs: u64, desc: String, mult: &[i32], shift: &[i32]) {
        let join = |v: &[i32]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
            }
        };
        let _ = writeln!(self.tsv, "{i}\t{kind}\t{out}\t{macs}\t{desc}\t{}\t{}", join(mult), join(shift));
    }

    fn op(&mut self, i: usize, op: &Op) {
        let init = match op {
            Op::Conv2d { input, weights, bias, output, params, requant } => {
                if params.groups != 1 {
                    fail(&format!("op {i}: grouped/depthwise convolution is not in this harness"));
                }
                let rq = requant.as_ref().unwrap_or_else(|| fail(&format!("op {i}: float convolution")));
                let (a, o) = (self.activation(input), self.activation(output));
                let [_, oh, ow, oc] = output.shape.nhwc();
                let [_, kh, kw, ic] = weights.shape.nhwc();
                let (mult, shift) = self.per_channel(rq, oc);
                let bias = bias.as_ref().unwrap_or_else(|| fail(&format!("op {i}: conv without bias")));
                let w = self.const_bytes(weights).to_vec();
                let b = i32s(self.const_bytes(bias));
                self.array_i8(&format!("w{i}"), &w);
                self.array_i32(&format!("b{i}"), &b);
                self.array_i32(&format!("m{i}"), &mult);
                self.array_i32(&format!("s{i}"), &shift);
                let macs = (oh * ow * oc * kh * kw * ic) as u64;
                let desc = format!("{kh}x{kw}/{} {}->{}", params.stride[0], hwc(input), hwc(output));
                self.row(i, "CONV_2D", o, macs, desc, &mult, &shift);
                if !matches!(params.activation, Activation::None | Activation::Relu) {
                    fail(&format!("op {i}: activation {:?} is not a plain clamp", params.activation));
                }
                format!(
                    "{{.kind = NET_CONV, .in0 = {a}, .in1 = -1, .out = {o}, .in_shape = {}, .out_shape = {}, .kh = {kh}, .kw = {kw}, \
                     .stride_h = {}, .stride_w = {}, .pad_top = {}, .pad_left = {}, .dil_h = {}, .dil_w = {}, .in0_offset = {}, \
                     .out_offset = {}, .act_min = {}, .act_max = {}, .weights = w{i}, .bias = b{i}, .mult = m{i}, .shift = s{i}}}",
                    shape(input),
                    shape(output),
                    params.stride[0],
                    params.stride[1],
                    params.padding.top,
                    params.padding.left,
                    params.dilation[0],
                    params.dilation[1],
                    -zp(input),
                    zp(output),
                    rq.act_min,
                    rq.act_max
                )
            }
            Op::Add { a, b, output, quant, .. } => {
                let q = quant.as_ref().unwrap_or_else(|| fail(&format!("op {i}: float add")));
                if a.shape != b.shape || a.shape != output.shape {
                    fail(&format!("op {i}: broadcasting add is not in this harness"));
                }
                let (x, y, o) = (self.activation(a), self.activation(b), self.activation(output));
                self.row(i, "ADD", o, 0, format!("{} + {}", hwc(a), hwc(b)), &[], &[]);
                format!(
                    "{{.kind = NET_ADD, .in0 = {x}, .in1 = {y}, .out = {o}, .in_shape = {}, .out_shape = {}, .in0_offset = {}, \
                     .in1_offset = {}, .out_offset = {}, .act_min = {}, .act_max = {}, .mult0 = {}, .shift0 = {}, .mult1 = {}, \
                     .shift1 = {}, .out_mult = {}, .out_shift = {}, .left_shift = {}}}",
                    shape(a),
                    shape(output),
                    -zp(a),
                    -zp(b),
                    zp(output),
                    q.act_min,
                    q.act_max,
                    q.a_mult,
                    q.a_shift,
                    q.b_mult,
                    q.b_shift,
                    q.out_mult,
                    q.out_shift,
                    q.left_shift
                )
            }
            Op::AvgPool2d { input, output, params, act_min, act_max } => {
                if zp(input) != zp(output) {
                    fail(&format!("op {i}: average pool with requantization is not in this harness"));
                }
                let (a, o) = (self.activation(input), self.activation(output));
                self.row(
                    i,
                    "AVERAGE_POOL_2D",
                    o,
                    0,
                    format!("{}x{} {}->{}", params.kernel[0], params.kernel[1], hwc(input), hwc(output)),
                    &[],
                    &[],
                );
                format!(
                    "{{.kind = NET_AVGPOOL, .in0 = {a}, .in1 = -1, .out = {o}, .in_shape = {}, .out_shape = {}, .kh = {}, .kw = {}, \
                     .stride_h = {}, .stride_w = {}, .pad_top = {}, .pad_left = {}, .act_min = {act_min}, .act_max = {act_max}}}",
                    shape(input),
                    shape(output),
                    params.kernel[0],
                    params.kernel[1],
                    params.stride[0],
                    params.stride[1],
                    params.padding.top,
                    params.padding.left
                )
            }
            Op::Reshape { input, output } => {
                let (a, o) = (self.activation(input), self.activation(output));
                self.row(i, "RESHAPE", o, 0, format!("{}->{}", hwc(input), hwc(output)), &[], &[]);
                format!(
                    "{{.kind = NET_RESHAPE, .in0 = {a}, .in1 = -1, .out = {o}, .in_shape = {}, .out_shape = {}}}",
                    shape(input),
                    shape(output)
                )
            }
            Op::FullyConnected { input, weights, bias, output, requant, .. } => {
                let rq = requant.as_ref().unwrap_or_else(|| fail(&format!("op {i}: float fully connected")));
                let Multiplier::PerTensor { mult, shift } = rq.multiplier else {
                    fail(&format!("op {i}: per-channel fully connected is not in this harness"))
                };
                let (a, o) = (self.activation(input), self.activation(output));
                let [n_out, n_in] = [weights.shape.dims[0] as usize, weights.shape.dims[1] as usize];
                let [batch, .., width] = input.shape.nhwc();
                if batch != 1 || width != n_in {
                    fail(&format!("op {i}: fully connected input is not [1, {n_in}]"));
                }
                let w = self.const_bytes(weights).to_vec();
                let bias = bias.as_ref().unwrap_or_else(|| fail(&format!("op {i}: fully connected without bias")));
                let b = i32s(self.const_bytes(bias));
                self.array_i8(&format!("w{i}"), &w);
                self.array_i32(&format!("b{i}"), &b);
                let w_zp = match weights.quant {
                    Quant::PerTensor { zero_point, .. } => zero_point,
                    _ => fail(&format!("op {i}: fully connected weights not per-tensor")),
                };
                self.row(i, "FULLY_CONNECTED", o, (n_in * n_out) as u64, format!("{n_in}->{n_out}"), &[mult], &[shift]);
                format!(
                    "{{.kind = NET_FC, .in0 = {a}, .in1 = -1, .out = {o}, .in_shape = {{1, 1, 1, {n_in}}}, .out_shape = {{1, 1, 1, {n_out}}}, \
                     .in0_offset = {}, .out_offset = {}, .filter_offset = {}, .act_min = {}, .act_max = {}, .weights = w{i}, .bias = b{i}, \
                     .out_mult = {mult}, .out_shift = {shift}}}",
                    -zp(input),
                    zp(output),
                    -w_zp,
                    rq.act_min,
                    rq.act_max
                )
            }
            Op::Softmax { input, output, quant, .. } => {
                let q = quant.as_ref().unwrap_or_else(|| fail(&format!("op {i}: float softmax")));
                let (a, o) = (self.activation(input), self.activation(output));
                let [n, .., c] = input.shape.nhwc();
                self.row(i, "SOFTMAX", o, 0, format!("{n}x{c}"), &[], &[]);
                format!(
                    "{{.kind = NET_SOFTMAX, .in0 = {a}, .in1 = -1, .out = {o}, .in_shape = {{{n}, 1, 1, {c}}}, .out_shape = {{{n}, 1, 1, {c}}}, \
                     .mult0 = {}, .shift0 = {}, .diff_min = {}}}",
                    q.input_multiplier,
                    q.input_left_shift,
                    q.diff_min
                )
            }
            other => fail(&format!("op {i}: {} is not in this harness", other.name())),
        };
        self.ops.push(init);
    }

    fn finish(&mut self, input: &[u8]) {
        let mut head = String::from(
            "/* Generated by bench/cortex-m/gen from the MLPerf Tiny IC .tflite (rsim_model::tflite::convert);\n   \
             do not edit. Constants are the converted model's. */\n#include \"harness.h\"\n\n",
        );
        let max_id = self.tensors.iter().map(|t| t.0).max().unwrap_or(0).max(self.model.info.input.id);
        for &(id, len) in &self.tensors {
            let _ = writeln!(head, "static int8_t t{id}[{len}] __attribute__((aligned(16)));");
        }
        let _ = write!(head, "int8_t *const net_tensor[{}] = {{", max_id + 1);
        for &(id, _) in &self.tensors {
            let _ = write!(head, " [{id}] = t{id},");
        }
        let _ = write!(head, " }};\nconst int32_t net_tensor_len[{}] = {{", max_id + 1);
        for &(id, len) in &self.tensors {
            let _ = write!(head, " [{id}] = {len},");
        }
        head.push_str(" };\n");
        let _ = writeln!(
            head,
            "const int net_input_id = {};\nconst int net_output_id = {};\n",
            self.model.info.input.id, self.model.info.output.id
        );
        let c = std::mem::take(&mut self.c);
        self.c = head;
        self.c.push_str(&c);
        let _ = write!(self.c, "const int8_t net_input[{}] = {{", input.len());
        for (i, b) in input.iter().enumerate() {
            let _ = write!(self.c, "{}{},", if i % 32 == 0 { "\n    " } else { " " }, *b as i8);
        }
        self.c.push_str("\n};\n");
        let _ = writeln!(self.c, "\nconst net_op net_ops[{}] = {{", self.ops.len());
        for o in &self.ops {
            let _ = writeln!(self.c, "    {o},");
        }
        let _ = writeln!(self.c, "}};\nconst int net_op_count = {};", self.ops.len());
    }
}
