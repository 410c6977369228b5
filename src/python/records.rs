//! Typed records (`as_dataclass=True`) built at the speed of dicts: each parsed dict becomes
//! the instance's `__dict__` as it is (the unnamed fields moved into `extra`), without a call
//! to the dataclass's `__init__` per record (1.76x the dict path before, bench/run.py).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};

static OBJECT_NEW: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `items` (dicts as parsed) turned in place into instances of `cls`, a frozen dataclass whose
/// fields are `names` plus `extra`: named fields absent from a record are None, the others go
/// to `extra`. Items that are not dicts are left as they are.
#[pyfunction]
pub fn as_dataclasses<'py>(
    py: Python<'py>,
    items: Bound<'py, PyList>,
    cls: Bound<'py, PyType>,
    names: Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyList>> {
    let object_new = OBJECT_NEW.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("builtins")?.getattr("object")?.getattr("__new__")?.unbind())
    })?;
    let object_new = object_new.bind(py);
    let names: Vec<Bound<'py, PyString>> =
        names.iter().map(|n| n.cast_into::<PyString>().map_err(PyErr::from)).collect::<PyResult<_>>()?;
    // Keys parsed by orjson are mostly the same string objects from record to record: compare
    // by identity first.
    let named = |key: &Bound<'py, PyAny>| names.iter().any(|n| key.is(n) || key.eq(n).unwrap_or(false));
    let extra_key = pyo3::intern!(py, "extra");
    for (i, item) in items.iter().enumerate() {
        let Ok(record) = item.cast::<PyDict>() else { continue };
        let extra = PyDict::new(py);
        if record.len() > names.len() || names.iter().any(|n| !record.contains(n).unwrap_or(false)) {
            for (key, value) in record.iter() {
                if !named(&key) {
                    extra.set_item(&key, value)?;
                }
            }
            for key in extra.keys() {
                record.del_item(key)?;
            }
            for name in &names {
                if !record.contains(name)? {
                    record.set_item(name, py.None())?;
                }
            }
        }
        record.set_item(extra_key, extra)?;
        let instance = object_new.call1((&cls,))?;
        // The instance is new and its class a plain dataclass: its `__dict__` can be set directly.
        // SAFETY: both pointers are live objects held by this frame; the call takes its own reference.
        let status =
            unsafe { pyo3::ffi::PyObject_GenericSetDict(instance.as_ptr(), record.as_ptr(), std::ptr::null_mut()) };
        if status != 0 {
            return Err(PyErr::fetch(py));
        }
        items.set_item(i, instance)?;
    }
    Ok(items)
}
