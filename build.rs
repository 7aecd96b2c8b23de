//! Emit pyo3's interpreter cfgs (`Py_3_12`, `Py_GIL_DISABLED`, ...) for this crate.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
