// A duration as seconds in a Double, for logs, timeouts and rates (the coordinator's liveness, the
// workers' and loads' timings): one definition for every module, Tensors being the one all import.

extension Duration {
    /// Seconds, with the fraction (attoseconds) as a Double.
    public var secondsValue: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}
