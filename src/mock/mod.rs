//! Placeholder: the embedded mock server lands here.
