//! What every fuzz target checks, one function per entry point.
//!
//! Each function takes arbitrary bytes and must return without panicking: a refused input
//! is an `Err`, never a crash. Where an input is accepted, the properties callers rely on
//! are asserted (extents inside the buffer, output lengths, kernels agreeing with the
//! reference), so that a wrong answer fails like a crash does. The same functions replay
//! the saved crash inputs in quantlens-core's `fuzz_regressions` test.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use quantlens_core::gguf::{Array, GgufModel, Header, Value};
use quantlens_core::quant::output::{f32_to_bf16_slice, f32_to_f16_slice};
use quantlens_core::quant::{self, endian, DequantError, Isa, Output};
use quantlens_core::tensor::TensorRef;
use quantlens_core::{Access, GgmlType, OpenOptions, KNOWN_TYPES};

/// Largest tensor the header targets decode, so a big accepted file stays fast.
const DECODE_CAP: u64 = 1 << 16;

/// Array elements read back per metadata array.
const ARRAY_SAMPLE: u64 = 64;

/// Parse a GGUF header; read back every metadata value and decode every small tensor.
pub fn gguf_header(data: &[u8]) {
    let Ok(header) = Header::parse(data) else {
        return;
    };
    check_header(&header, data);
}

fn check_header(header: &Header, data: &[u8]) {
    for kv in &header.metadata {
        visit_value(&kv.value, data);
        assert!(
            header.get(&kv.key).is_some(),
            "key '{}' not indexed",
            kv.key
        );
    }
    for t in &header.tensors {
        let Some(nbytes) = t.nbytes else {
            continue;
        };
        let end = t.offset.checked_add(nbytes).expect("extent overflows");
        assert!(end <= data.len() as u64, "tensor '{}' past the end", t.name);
        let bytes = &data[t.offset as usize..end as usize];
        if t.n_elements <= DECODE_CAP && quant::can_dequantize(t.ty) {
            let mut out = vec![0f32; t.n_elements as usize];
            let mut owned;
            let src = if header.endian == quantlens_core::gguf::Endian::Big {
                owned = bytes.to_vec();
                if endian::to_little_endian(t.ty, &mut owned).is_err() {
                    continue;
                }
                &owned[..]
            } else {
                bytes
            };
            quant::dequantize_f32(t.ty, src, &mut out)
                .unwrap_or_else(|e| panic!("accepted tensor '{}' fails to decode: {e}", t.name));
        }
    }
}

fn visit_value(value: &Value, data: &[u8]) {
    match value {
        Value::String(span) => {
            assert_eq!(span.slice(data).len() as u64, span.len, "string span");
        }
        Value::Array(array) => visit_array(array, data),
        _ => {}
    }
}

fn visit_array(array: &Array, data: &[u8]) {
    if let Some(bytes) = array.fixed_bytes(data) {
        assert_eq!(bytes.len() as u64, array.byte_len, "fixed array bytes");
    }
    let last = array.len.saturating_sub(1);
    for i in (0..array.len.min(ARRAY_SAMPLE)).chain([last]) {
        if let Some(v) = array.get(data, i) {
            visit_value(&v, data);
        } else {
            assert!(array.len == 0, "element {i} of {} unreadable", array.len);
        }
    }
    assert!(array.get(data, array.len).is_none());
}

/// Separates the shards of a split model inside one fuzz input.
pub const SHARD_SEPARATOR: &[u8] = b"\n--quantlens-shard--\n";

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Assemble a split GGUF model from shards cut out of `data`: the first byte picks which
/// shard is opened (and, by its top bit, whether files are mapped or read), the rest is split at [`SHARD_SEPARATOR`] into up to 4 files named
/// `m-0000I-of-0000N.gguf`.
pub fn gguf_split(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let shards: Vec<&[u8]> = split_at_separator(rest).take(4).collect();
    let count = shards.len();
    let dir = scratch_dir();
    std::fs::create_dir_all(&dir).expect("scratch dir");
    for (i, bytes) in shards.iter().enumerate() {
        let path = dir.join(format!("m-{:05}-of-{count:05}.gguf", i + 1));
        std::fs::write(path, bytes).expect("write shard");
    }
    let open = dir.join(format!(
        "m-{:05}-of-{count:05}.gguf",
        usize::from(pick & 0x7f) % count + 1
    ));
    // The top bit of the pick reads the files instead of mapping them.
    let access = if pick & 0x80 == 0 {
        Access::Map
    } else {
        Access::Read
    };
    let options = OpenOptions {
        access,
        ..OpenOptions::default()
    };
    let result = GgufModel::open_with(&open, &options);
    if let Ok(model) = result {
        let names: Vec<String> = model.tensors().map(|(_, t)| t.name.to_string()).collect();
        assert_eq!(names.len(), model.tensor_count());
        for (i, name) in names.iter().enumerate() {
            assert_eq!(model.position(name).ok(), Some(i), "tensor '{name}'");
            let (shard, info) = model.tensor(name).expect("listed tensor");
            if let (Some(nbytes), Ok(bytes)) = (info.nbytes, model.tensor_data(name)) {
                assert_eq!(bytes.len() as u64, nbytes);
            }
            check_header(&shard.header, shard.file.bytes());
        }
        if let Some(split) = &model.split {
            assert_eq!(split.count as usize, model.shards.len());
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn split_at_separator(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let current = rest?;
        let found = current
            .windows(SHARD_SEPARATOR.len())
            .position(|w| w == SHARD_SEPARATOR);
        if let Some(at) = found {
            rest = Some(&current[at + SHARD_SEPARATOR.len()..]);
            Some(&current[..at])
        } else {
            rest = None;
            Some(current)
        }
    })
}

/// A folder of its own for each call, under /dev/shm where there is one.
fn scratch_dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let base = if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    };
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    base.join(format!("quantlens-fuzz-{}-{n}", std::process::id()))
}

/// Parse a safetensors file; every tensor must lie inside it and match its shape.
pub fn safetensors(data: &[u8]) {
    let Ok(parsed) = quantlens_core::safetensors::parse(data) else {
        return;
    };
    for t in &parsed.tensors {
        check_extent(t, data.len() as u64);
        let size = t.dtype.size().expect("plain dtype") as u64;
        let n = t.n_elements().expect("element count fits");
        assert_eq!(n.checked_mul(size), Some(t.nbytes), "tensor '{}'", t.name);
        assert!(t.is_contiguous());
    }
}

/// Read a PyTorch checkpoint (zip index, then the pickle it holds).
pub fn pytorch_zip(data: &[u8]) {
    if let Ok(parsed) = quantlens_core::pytorch::parse(data) {
        check_pytorch(&parsed.tensors, data);
    }
}

/// Run the pickle reader over raw bytes, then read them as a legacy checkpoint.
pub fn pickle(data: &[u8]) {
    let mut vm = quantlens_core::pytorch::pickle::Vm::new(data, 0);
    let _ = vm.load(0);
    if let Ok(parsed) = quantlens_core::pytorch::legacy::parse(data) {
        check_pytorch(&parsed.tensors, data);
    }
}

/// A checkpoint's tensors must span what their shape and strides say; whether the bytes
/// are there is checked when they are read, which is mimicked here.
fn check_pytorch(tensors: &[TensorRef], data: &[u8]) {
    for t in tensors {
        assert_eq!(t.shape.len(), t.strides.len(), "tensor '{}'", t.name);
        let within = t
            .offset
            .checked_add(t.nbytes)
            .is_some_and(|end| end <= data.len() as u64);
        if within {
            let _ = &data[t.offset as usize..(t.offset + t.nbytes) as usize];
        }
    }
}

fn check_extent(t: &TensorRef, len: u64) {
    let end = t.offset.checked_add(t.nbytes).expect("extent overflows");
    assert!(end <= len, "tensor '{}' ends at {end}, past {len}", t.name);
}

/// Decode arbitrary bytes as blocks of any type: wrong lengths are refused, every kernel
/// agrees with the scalar reference, and 16-bit outputs round the reference.
///
/// Byte 0 picks the type (an index into the known types, else an unknown id), byte 1 the
/// output type and thread count; the rest are the blocks.
pub fn dequant(data: &[u8]) {
    let [pick, mode, src @ ..] = data else {
        return;
    };
    let ty = KNOWN_TYPES
        .get(usize::from(*pick))
        .map_or(GgmlType(u32::from(*pick)), |t| GgmlType(t.id));
    let Some(info) = ty.info().filter(|_| quant::can_dequantize(ty)) else {
        let mut out = vec![0f32; src.len()];
        assert!(matches!(
            quant::dequantize_f32(ty, src, &mut out),
            Err(DequantError::UnsupportedType(_))
        ));
        return;
    };
    let (block, type_size) = (info.block_size as usize, info.type_size as usize);
    let blocks = src.len() / type_size;
    let whole = &src[..blocks * type_size];
    let weights = blocks * block;
    let refused = |src: &[u8], n: usize| {
        let mut out = vec![0f32; n];
        quant::dequantize_f32(ty, src, &mut out).is_err() && out.iter().all(|&v| v == 0.0)
    };
    if whole.len() != src.len() {
        assert!(refused(src, weights), "partial block accepted");
    }
    assert!(refused(whole, weights + 1), "long output accepted");
    if weights > 0 {
        assert!(refused(whole, weights - 1), "short output accepted");
    }

    let mut reference = vec![0f32; weights];
    quant::dequantize_f32_with(Isa::Scalar, ty, whole, &mut reference).expect("reference");
    for isa in Isa::ALL {
        if isa == Isa::Scalar || !isa.is_available() {
            continue;
        }
        let mut out = vec![0f32; weights];
        quant::dequantize_f32_with(isa, ty, whole, &mut out).expect("simd");
        for (i, (a, b)) in out.iter().zip(&reference).enumerate() {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{ty} {}: weight {i} is {a}, reference {b}",
                isa.name()
            );
        }
    }

    let threads = Some(usize::from(mode % 4) + 1);
    let isa = quant::isa();
    match mode / 4 % 3 {
        0 => {
            let mut out = vec![0f32; weights];
            quant::dequantize(isa, ty, whole, Output::F32(&mut out), threads).expect("f32");
            same_f32(&out, &reference);
        }
        1 => {
            let mut out = vec![0u16; weights];
            quant::dequantize(isa, ty, whole, Output::F16(&mut out), threads).expect("f16");
            let mut expected = vec![0u16; weights];
            f32_to_f16_slice(&reference, &mut expected);
            same_16(&out, &expected, 0x7c00, 0x03ff);
        }
        _ => {
            let mut out = vec![0u16; weights];
            quant::dequantize(isa, ty, whole, Output::BF16(&mut out), threads).expect("bf16");
            let mut expected = vec![0u16; weights];
            f32_to_bf16_slice(&reference, &mut expected);
            same_16(&out, &expected, 0x7f80, 0x007f);
        }
    }

    let mut swapped = whole.to_vec();
    let _ = endian::to_little_endian(ty, &mut swapped);
}

fn same_f32(out: &[f32], expected: &[f32]) {
    for (i, (a, b)) in out.iter().zip(expected).enumerate() {
        assert!(
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            "weight {i}: {a} != {b}"
        );
    }
}

fn same_16(out: &[u16], expected: &[u16], exponent: u16, mantissa: u16) {
    let nan = |b: u16| b & exponent == exponent && b & mantissa != 0;
    for (i, (&a, &b)) in out.iter().zip(expected).enumerate() {
        assert!(
            a == b || (nan(a) && nan(b)),
            "weight {i}: {a:#06x} != {b:#06x}"
        );
    }
}
