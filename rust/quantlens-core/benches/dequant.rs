//! Single-thread dequantization throughput per type: the scalar reference against the
//! kernels this CPU selects, into a pre-faulted f32 buffer of 1 Mi weights.
//!
//! `cargo bench -p quantlens-core --bench dequant -- Q4_K` runs one type.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use quantlens_core::quant::{can_dequantize, dequantize_f32_with, isa, Isa};
use quantlens_core::{GgmlType, KNOWN_TYPES};

const WEIGHTS: usize = 1 << 20;

/// Random blocks whose f16 scale fields hold small normal values.
fn blocks(ty: GgmlType) -> Vec<u8> {
    let info = ty.info().unwrap();
    let n = WEIGHTS / info.block_size as usize * info.type_size as usize;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Keep every other byte's exponent moderate so f16 fields stay finite.
            if i % 2 == 1 {
                (state as u8) & 0x3b
            } else {
                state as u8
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("dequantize_f32");
    group.throughput(Throughput::Elements(WEIGHTS as u64));
    let mut out = vec![0.0f32; WEIGHTS];
    for t in KNOWN_TYPES {
        let ty = GgmlType(t.id);
        if !can_dequantize(ty) {
            continue;
        }
        let src = blocks(ty);
        for chosen in [Isa::Scalar, isa()] {
            let id = BenchmarkId::new(t.name, chosen.name());
            group.bench_function(id, |b| {
                b.iter(|| dequantize_f32_with(chosen, ty, &src, &mut out).unwrap());
            });
            if chosen == isa() {
                break;
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
