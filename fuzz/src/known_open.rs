//! Defects the fuzz targets found that are not fixed yet, each reported with its reproducer
//! in tests/fuzz_regressions.rs. A target steps around an open defect here, so it can go on
//! looking for new ones; delete the entry (and un-ignore its regression test) once it is fixed.
//!
//! None is open at present: a newly found defect gets a predicate here, e.g.
//! `pub fn notify_carriage_return(data: &[u8]) -> bool`, that its target checks before the
//! property it breaks.
