//! Element-wise `f32` arithmetic that tract's optimiser leaves generic.
//!
//! Why: tract runs `Add`, `Sub`, `Mul` and `Div` on its vector kernels only
//! when it can prove an operand holds at least 32 elements and the
//! broadcast is "by scalar" or "unicast". With symbolic batch and sequence
//! dimensions it can prove neither, so BERT's residual additions
//! (`[batch, seq, 384]`) and attention-mask additions (`[batch, 12, seq,
//! seq]` plus `[batch, 1, 1, seq]`) ran a generic loop that calls a
//! function per element: about 10 % of MiniLM's time on tract (`perf`:
//! scalar `addss` in `FnOnce::call_once`). After tract has optimised a
//! plan, each such operator left generic is replaced by [`FastBinary`]:
//! the same arithmetic through one `ndarray` zip whose closure the
//! compiler inlines and vectorises along the contiguous last axis.
//!
//! Only `f32` operators whose output has the first operand's shape are
//! replaced (the result is written into that operand), so broadcasting
//! never enlarges anything; the values computed are the same.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;

/// The arithmetic of a [`FastBinary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arith {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
}

/// `a ∘ b` for `f32`, `b` broadcast to `a`'s shape, written into `a`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FastBinary(pub Arith);

impl Op for FastBinary {
    fn name(&self) -> StaticName {
        format!("nboost.Fast{:?}", self.0).into()
    }

    op_as_typed_op!();
}

impl EvalOp for FastBinary {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (a, b) = args_2!(inputs);
        let mut a = a.into_tensor();
        {
            let mut out = a.to_plain_array_view_mut::<f32>()?;
            let b = b.to_plain_array_view::<f32>()?;
            let b = b.broadcast(out.raw_dim()).ok_or_else(|| {
                anyhow::anyhow!("{:?} does not broadcast to {:?}", b.shape(), out.shape())
            })?;
            let zip = tract_ndarray::Zip::from(&mut out).and(&b);
            match self.0 {
                Arith::Add => zip.for_each(|x, y| *x += *y),
                Arith::Sub => zip.for_each(|x, y| *x -= *y),
                Arith::Mul => zip.for_each(|x, y| *x *= *y),
                Arith::Div => zip.for_each(|x, y| *x /= *y),
            }
        }
        Ok(tvec!(a.into_tvalue()))
    }
}

impl TypedOp for FastBinary {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// Replace, in an optimised model, every generic `f32` binary operator
/// that [`FastBinary`] can run: the number replaced.
pub fn replace_generic(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        let Some(op) = model.node(id).op_as::<TypedBinOp>() else {
            continue;
        };
        let arith = match op.0.name() {
            "Add" => Arith::Add,
            "Sub" => Arith::Sub,
            "Mul" => Arith::Mul,
            "Div" => Arith::Div,
            _ => continue,
        };
        let inputs = &model.node(id).inputs;
        let a = model.outlet_fact(inputs[0])?;
        let b = model.outlet_fact(inputs[1])?;
        let out = model.outlet_fact(OutletId::new(id, 0))?;
        if a.datum_type != f32::datum_type()
            || b.datum_type != f32::datum_type()
            || out.datum_type != f32::datum_type()
            || a.rank() != b.rank()
            || a.shape != out.shape
        {
            continue;
        }
        model.node_mut(id).op = Box::new(FastBinary(arith));
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::math;

    #[test]
    fn fast_binaries_compute_what_the_generic_ones_do() -> TractResult<()> {
        let sym = SymbolScope::default();
        let batch = sym.sym("batch");
        let seq = sym.sym("seq");
        let mut model = TypedModel {
            symbols: sym,
            ..TypedModel::default()
        };
        let big = f32::fact(dims![batch.clone(), 3, seq.clone(), seq.clone()]);
        let s = model.add_source("scores", big)?;
        let m = model.add_source("mask", f32::fact(dims![batch, 1, 1, seq]))?;
        let mut x = s;
        for (i, op) in [math::add(), math::mul(), math::sub(), math::div()]
            .into_iter()
            .enumerate()
        {
            x = model.wire_node(format!("op{i}"), op, &[x, m])?[0];
        }
        model.select_output_outlets(&[x])?;
        let scores = Tensor::from_shape(
            &[2, 3, 4, 4],
            &(0..96).map(|v| v as f32 - 40.0).collect::<Vec<_>>(),
        )?;
        let mask = Tensor::from_shape(&[2, 1, 1, 4], &[1f32, -2., 3., 0.5, -1., 2., 4., 0.25])?;
        let run = |m: &TypedModel| -> TractResult<Tensor> {
            let out = m
                .clone()
                .into_runnable()?
                .run(tvec!(scores.clone().into(), mask.clone().into()))?;
            Ok(out[0].clone().into_tensor())
        };
        let mut optimised = model.into_optimized()?;
        let want = run(&optimised)?;
        let replaced = replace_generic(&mut optimised)?;
        assert!(replaced >= 1, "the middle broadcasts stay generic in tract");
        assert_eq!(run(&optimised)?, want);
        Ok(())
    }
}
