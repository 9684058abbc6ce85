//! Helpers shared by the unit tests of several modules (compiled only for `cfg(test)`).
//!
//! The smoke-test generator is the one all crates share ([`crostini_common::test_rng`]).

pub(crate) use crostini_common::test_rng::{mutations, XorShift64};
