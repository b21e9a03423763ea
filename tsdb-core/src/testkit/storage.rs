//! Conformance tests for `StorageEngine` implementations (arrive with issue 3).
