// The release this build is: the one place the version string is written (`switchyard --version`,
// `GET /version`).

/// Switchyard's version, semantic versioning; bumped by hand at a release.
public let switchyardVersion = "0.1.0"
