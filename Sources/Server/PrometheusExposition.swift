// /metrics: the engine's counters in the Prometheus text exposition format 0.0.4. Pure: a snapshot
// in, text out. Every family has HELP and TYPE lines and the `switchyard_` prefix.
import Coordinator
import Foundation

/// Renders `EngineMetrics` as Prometheus text.
enum PrometheusExposition {
    /// The `content-type` of the exposition.
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The exposition of one snapshot, ending in a newline.
    static func render(_ metrics: EngineMetrics) -> String {
        var out = ""
        histogram(
            &out, "switchyard_request_latency_seconds",
            "Seconds from a request's submission to its last token.", metrics.requestLatency)
        histogram(
            &out, "switchyard_time_to_first_token_seconds",
            "Seconds from a request's submission to its first generated token.", metrics.timeToFirstToken)
        histogram(
            &out, "switchyard_inter_token_latency_seconds",
            "Seconds between consecutive generated tokens of a request.", metrics.interTokenLatency)
        histogram(
            &out, "switchyard_request_queue_time_seconds",
            "Seconds a request waited before its first step.", metrics.queueTime)
        histogram(
            &out, "switchyard_step_requests", "Requests running in each engine step (the batch's requests).",
            metrics.stepRequests)

        header(&out, "switchyard_requests_running", "Requests being generated now.", type: "gauge")
        out += "switchyard_requests_running \(metrics.runningRequests)\n"
        header(&out, "switchyard_requests_waiting", "Requests accepted and waiting to start.", type: "gauge")
        out += "switchyard_requests_waiting \(metrics.waitingRequests)\n"
        header(
            &out, "switchyard_kv_cache_usage_ratio", "KV cache tokens reserved divided by capacity (0 to 1).",
            type: "gauge")
        out += "switchyard_kv_cache_usage_ratio \(number(metrics.kvCacheUsage))\n"

        if let cluster = metrics.cluster {
            header(&out, "switchyard_workers_configured", "Worker slots in the placement.", type: "gauge")
            out += "switchyard_workers_configured \(cluster.configured)\n"
            header(&out, "switchyard_workers_up", "Worker slots with a ready worker.", type: "gauge")
            out += "switchyard_workers_up \(cluster.up)\n"
            let counters = cluster.counters
            header(&out, "switchyard_workers_joined_total", "Worker registrations accepted (joins and rejoins).", type: "counter")
            out += "switchyard_workers_joined_total \(counters.workersJoined)\n"
            header(
                &out, "switchyard_workers_lost_total",
                "Workers declared lost (connection closed, left, silent, or missed a dispatch deadline).", type: "counter")
            out += "switchyard_workers_lost_total \(counters.workersLost)\n"
            header(
                &out, "switchyard_failovers_total",
                "Lost workers whose experts had no replica and moved to survivors or waited for a rejoin.", type: "counter")
            out += "switchyard_failovers_total \(counters.failovers)\n"
            header(
                &out, "switchyard_dispatches_retried_total", "Dispatches sent again because their worker was lost or refused them.",
                type: "counter")
            out += "switchyard_dispatches_retried_total \(counters.retriedDispatches)\n"
            header(
                &out, "switchyard_dispatches_hedged_total", "Dispatches also sent to a replica because the first worker was slow.",
                type: "counter")
            out += "switchyard_dispatches_hedged_total \(counters.hedgedDispatches)\n"
            header(
                &out, "switchyard_failover_stall_seconds_total",
                "Seconds steps waited for rows that had to be sent again (retried or hedged), summed.", type: "counter")
            out += "switchyard_failover_stall_seconds_total \(number(counters.stallSeconds))\n"
            header(
                &out, "switchyard_verify_dispatches_total",
                "Dispatches computed again by a second holder of their experts and compared bitwise (--verify-fraction).",
                type: "counter")
            out += "switchyard_verify_dispatches_total \(counters.verifiedDispatches)\n"
            header(
                &out, "switchyard_verify_unverifiable_total",
                "Dispatches sampled for verification whose experts had no second ready holder.", type: "counter")
            out += "switchyard_verify_unverifiable_total \(counters.unverifiableDispatches)\n"
            header(
                &out, "switchyard_verify_mismatches_total",
                "Verified dispatches a worker answered differently from the coordinator's own computation (it is then taken out of the placement).",
                type: "counter")
            for worker in counters.verifyMismatches.keys.sorted() {
                out += "switchyard_verify_mismatches_total{worker=\"\(escape(worker))\"} \(counters.verifyMismatches[worker]!)\n"
            }
        }

        header(&out, "switchyard_prompt_tokens_total", "Prompt tokens prefilled.", type: "counter")
        out += "switchyard_prompt_tokens_total \(metrics.promptTokensTotal)\n"
        header(&out, "switchyard_generation_tokens_total", "Tokens generated.", type: "counter")
        out += "switchyard_generation_tokens_total \(metrics.generationTokensTotal)\n"

        header(&out, "switchyard_requests_finished_total", "Requests finished, by reason.", type: "counter")
        for reason in metrics.finishedRequests.keys.sorted() {
            out +=
                "switchyard_requests_finished_total{reason=\"\(escape(reason))\"} \(metrics.finishedRequests[reason]!)\n"
        }

        header(
            &out, "switchyard_expert_tokens_total", "Tokens routed to each expert of each MoE layer.", type: "counter")
        for (layer, experts) in metrics.expertTokens.enumerated() {
            for (expert, count) in experts.enumerated() {
                out += "switchyard_expert_tokens_total{layer=\"\(layer)\",expert=\"\(expert)\"} \(count)\n"
            }
        }

        header(
            &out, "switchyard_layer_balancedness",
            "Mean over max of the tokens routed to each expert of the layer since start (1 is even, 0 idle).",
            type: "gauge")
        // Labelled with the MoE layers' real numbers (dense layers have no experts to balance).
        for (index, value) in metrics.layerBalancedness.enumerated() {
            let layer = index < metrics.moeLayers.count ? metrics.moeLayers[index] : index
            out += "switchyard_layer_balancedness{layer=\"\(layer)\"} \(number(value))\n"
        }
        header(
            &out, "switchyard_layer_worker_balancedness",
            "Mean over max of the (token, expert) rows each worker computed for the layer since start.",
            type: "gauge")
        for (index, value) in metrics.layerWorkerBalancedness.enumerated() {
            let layer = index < metrics.moeLayers.count ? metrics.moeLayers[index] : index
            out += "switchyard_layer_worker_balancedness{layer=\"\(layer)\"} \(number(value))\n"
        }

        let workerCounters: [(String, String, (WorkerLayerLoad) -> Int)] = [
            ("switchyard_worker_rows_total", "Token rows dispatched to the worker.", { $0.rowCount }),
            ("switchyard_worker_expert_rows_total", "(token, expert) rows the worker computed.", { $0.expertRowCount }),
            ("switchyard_worker_bytes_sent_total", "Bytes of DISPATCH messages sent to the worker.", { $0.bytesSent }),
            ("switchyard_worker_bytes_received_total", "Bytes of COMBINE messages received from the worker.", { $0.bytesReceived }),
        ]
        for (name, help, value) in workerCounters {
            header(&out, name, help, type: "counter")
            for worker in metrics.workers {
                out += "\(name){worker=\"\(escape(worker.name))\"} \(value(worker.load))\n"
            }
        }
        histogram(
            &out, "switchyard_worker_dispatch_seconds",
            "Seconds from sending a DISPATCH to a worker to receiving its COMBINE, per MoE layer of a step.",
            metrics.workers.map { (["worker": $0.name], $0.roundTripSeconds) })
        histogram(
            &out, "switchyard_worker_compute_seconds",
            "Seconds the worker reported computing one dispatch.",
            metrics.workers.map { (["worker": $0.name], $0.computeSeconds) })
        return out
    }

    private static func header(_ out: inout String, _ name: String, _ help: String, type: String) {
        out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    /// Buckets are cumulative in the exposition; `EngineMetrics` keeps them per bucket.
    private static func histogram(_ out: inout String, _ name: String, _ help: String, _ histogram: Histogram) {
        self.histogram(&out, name, help, [([:], histogram)])
    }

    /// A histogram family with one series per label set.
    private static func histogram(
        _ out: inout String, _ name: String, _ help: String, _ series: [([String: String], Histogram)]
    ) {
        header(&out, name, help, type: "histogram")
        for (labels, histogram) in series {
            let prefix = labels.keys.sorted().map { "\($0)=\"\(escape(labels[$0]!))\"," }.joined()
            let plain = prefix.isEmpty ? "" : "{\(prefix.dropLast())}"
            var cumulative: UInt64 = 0
            for (index, bound) in histogram.upperBounds.enumerated() {
                cumulative += histogram.bucketCounts[index]
                out += "\(name)_bucket{\(prefix)le=\"\(number(bound))\"} \(cumulative)\n"
            }
            cumulative += histogram.bucketCounts[histogram.upperBounds.count]
            out += "\(name)_bucket{\(prefix)le=\"+Inf\"} \(cumulative)\n"
            out += "\(name)_sum\(plain) \(number(histogram.sum))\n"
            out += "\(name)_count\(plain) \(histogram.count)\n"
        }
    }

    /// A sample value as Prometheus writes it (`+Inf`, `-Inf`, `NaN` for the special values).
    static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        return "\(value)"
    }

    /// Label values escape backslash, double quote and newline.
    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}
