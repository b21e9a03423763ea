//! Conformance tests for `TimeIndex` implementations (arrive with issue 4).
