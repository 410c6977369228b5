//! Typed records (`as_dataclass=True`) built at the speed of dicts: the named fields are taken
//! out of each parsed dict into the instance's `__dict__`, what is left of it becomes `extra`,
//! and no `__init__` runs per record (`FileResult.from_dict` per record cost 1.76x the dict path).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};

/// `items` (dicts as parsed) turned in place into instances of `cls`, a frozen dataclass whose
/// fields are `names` plus `extra`: named fields absent from a record are None, the others go
/// to `extra` (the parsed dict itself, the named ones taken out). Items that are not dicts are
/// left as they are.
#[pyfunction]
pub fn as_dataclasses<'py>(
    py: Python<'py>,
    items: Bound<'py, PyList>,
    cls: Bound<'py, PyType>,
    names: Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyList>> {
    let names: Vec<Bound<'py, PyString>> =
        names.iter().map(|n| n.cast_into::<PyString>().map_err(PyErr::from)).collect::<PyResult<_>>()?;
    let extra_key = pyo3::intern!(py, "extra");
    // SAFETY: `cls` is a live type object; every type has a tp_alloc slot (object's is generic).
    let alloc: pyo3::ffi::allocfunc =
        unsafe { std::mem::transmute(pyo3::ffi::PyType_GetSlot(cls.as_type_ptr(), pyo3::ffi::Py_tp_alloc)) };
    for (i, item) in items.iter().enumerate() {
        let Ok(record) = item.cast::<PyDict>() else { continue };
        let fields = PyDict::new(py);
        for name in &names {
            match record.get_item(name)? {
                Some(value) => {
                    record.del_item(name)?;
                    fields.set_item(name, value)?;
                }
                None => fields.set_item(name, py.None())?,
            }
        }
        fields.set_item(extra_key, record)?;
        // What `object.__new__(cls)` does, without the call: the instance gets `fields` as its
        // `__dict__` directly (its `__init__` would only set them one by one).
        // SAFETY: alloc returns a new reference or NULL with an exception set; both pointers
        // are live for the SetDict call, which takes its own reference to `fields`.
        let instance = unsafe {
            let raw = alloc(cls.as_type_ptr(), 0);
            Bound::from_owned_ptr_or_err(py, raw)?
        };
        let status =
            unsafe { pyo3::ffi::PyObject_GenericSetDict(instance.as_ptr(), fields.as_ptr(), std::ptr::null_mut()) };
        if status != 0 {
            return Err(PyErr::fetch(py));
        }
        items.set_item(i, instance)?;
    }
    Ok(items)
}
