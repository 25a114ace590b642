// Whether this run is CI's: there, a test that cannot run on this host fails instead of skipping.
import Foundation

public enum ContinuousIntegration {
    /// `SWITCHYARD_CI=1` (set by .ci/run): every test category CI can run must run; a test that
    /// would skip for a missing tool fails instead, naming the tool.
    public static var required: Bool { ProcessInfo.processInfo.environment["SWITCHYARD_CI"] == "1" }
}
