//! Sets pyo3's cfgs for the Python being built for (`Py_GIL_DISABLED` on a free-threaded one:
//! see src/lock.rs).

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
