//! The request pipeline, one module per stage (see `DESIGN.md`).

pub mod audit;
