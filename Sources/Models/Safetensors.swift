// The safetensors format: an 8-byte little-endian header length N, N bytes of JSON mapping each
// tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the data section
// that follows the header), then the data. Every field is checked before a byte is used: the file
// is untrusted input.
public import Foundation
public import Tensors

/// One tensor's entry in a safetensors header.
public struct SafetensorsEntry: Sendable, Equatable {
    /// The tensor name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    public let name: String
    /// The dtype as the header spells it (`F32`, `BF16`, `I64`, …).
    public let dtypeName: String
    /// The dtype, when it is one the runtime computes with.
    public let dtype: DType?
    /// The shape, outermost dimension first.
    public let shape: [Int]
    /// The tensor's bytes as absolute offsets within the file.
    public let byteRange: Range<Int>

    /// The number of elements (product of the shape).
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A memory-mapped safetensors file with a validated header.
final class SafetensorsFile: Sendable {
    /// The file name used in errors (relative to the checkpoint directory).
    let displayName: String
    let mapping: MappedFile
    /// The entries by tensor name.
    let entries: [String: SafetensorsEntry]

    /// The longest header accepted; real headers are a few MB at most.
    static let maximumHeaderByteCount = 100 * 1024 * 1024

    /// Maps `url` and validates its header: length, JSON, dtypes, shapes, byte counts, offsets
    /// within the file and not overlapping.
    init(url: URL, displayName: String) throws(ModelError) {
        self.displayName = displayName
        mapping = try MappedFile(path: url.path, displayName: displayName)
        entries = try Self.parseHeader(mapping, displayName: displayName)
    }

    /// The bytes of `entry` (which must come from this file).
    func bytes(of entry: SafetensorsEntry) -> UnsafeRawBufferPointer {
        guard let base = mapping.base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + entry.byteRange.lowerBound, count: entry.byteRange.count)
    }

    private static func parseHeader(_ mapping: MappedFile, displayName: String) throws(ModelError)
        -> [String: SafetensorsEntry]
    {
        func invalid(_ message: String) -> ModelError { .invalidSafetensors(file: displayName, message: message) }
        let fileSize = mapping.byteCount
        guard fileSize >= 8, let base = mapping.base else {
            throw invalid("file is \(fileSize) bytes, shorter than the 8-byte header length")
        }
        let declared = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
        guard declared <= UInt64(fileSize - 8) else {
            throw invalid("header length \(declared) exceeds the \(fileSize - 8) bytes after the length field")
        }
        let headerByteCount = Int(declared)
        guard headerByteCount <= maximumHeaderByteCount else {
            throw invalid("header length \(headerByteCount) exceeds the limit of \(maximumHeaderByteCount) bytes")
        }
        let headerData = Data(bytes: base + 8, count: headerByteCount)
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: headerData)
        } catch {
            throw invalid("header is not valid JSON (\(headerByteCount) bytes)")
        }
        guard let header = parsed as? [String: Any] else { throw invalid("header is not a JSON object") }
        let dataStart = 8 + headerByteCount
        let dataSize = fileSize - dataStart
        var entries: [String: SafetensorsEntry] = [:]
        for (name, value) in header where name != "__metadata__" {
            guard let fields = value as? [String: Any] else { throw invalid("tensor \(name) is not a JSON object") }
            guard let dtypeName = fields["dtype"] as? String else {
                throw invalid("tensor \(name) has no string dtype")
            }
            guard let elementSize = elementByteCount(dtypeName) else {
                throw invalid("tensor \(name) has unknown dtype \(dtypeName)")
            }
            guard let shapeValues = fields["shape"] as? [Any] else {
                throw invalid("tensor \(name) has no shape array")
            }
            var shape: [Int] = []
            var elementCount = 1
            for dimensionValue in shapeValues {
                guard let dimension = exactInt(dimensionValue), dimension >= 0 else {
                    throw invalid("tensor \(name) has shape \(shapeValues), expected non-negative integers")
                }
                let (product, overflow) = elementCount.multipliedReportingOverflow(by: dimension)
                guard !overflow else { throw invalid("tensor \(name) has shape \(shapeValues) whose size overflows") }
                elementCount = product
                shape.append(dimension)
            }
            guard let offsets = fields["data_offsets"] as? [Any], offsets.count == 2,
                let begin = exactInt(offsets[0]), let end = exactInt(offsets[1])
            else { throw invalid("tensor \(name) has no data_offsets [begin, end]") }
            guard begin >= 0, begin <= end, end <= dataSize else {
                throw invalid(
                    "tensor \(name) has data_offsets [\(begin), \(end)] outside the \(dataSize)-byte data section")
            }
            let (expectedBytes, overflow) = elementCount.multipliedReportingOverflow(by: elementSize)
            guard !overflow, expectedBytes == end - begin else {
                throw invalid(
                    "tensor \(name) has \(end - begin) bytes, but shape \(shape) of \(dtypeName) needs \(elementCount * elementSize)"
                )
            }
            entries[name] = SafetensorsEntry(
                name: name, dtypeName: dtypeName, dtype: DType(safetensorsName: dtypeName), shape: shape,
                byteRange: (dataStart + begin)..<(dataStart + end))
        }
        let ordered = entries.values.filter { !$0.byteRange.isEmpty }.sorted {
            ($0.byteRange.lowerBound, $0.name) < ($1.byteRange.lowerBound, $1.name)
        }
        for (previous, next) in zip(ordered, ordered.dropFirst())
        where next.byteRange.lowerBound < previous.byteRange.upperBound {
            throw invalid("tensors \(previous.name) and \(next.name) have overlapping data_offsets")
        }
        return entries
    }

    private static func elementByteCount(_ dtypeName: String) -> Int? {
        switch dtypeName {
        case "F64", "I64", "U64": 8
        case "F32", "I32", "U32": 4
        case "F16", "BF16", "I16", "U16": 2
        case "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2": 1
        default: nil
        }
    }

    /// An integer JSON value (not a fraction). (`is Bool` is not checked: on Linux every NSNumber
    /// holding 0 or 1 casts to Bool.)
    private static func exactInt(_ value: Any) -> Int? {
        if let integer = value as? Int { return integer }
        if let number = value as? NSNumber {
            let double = number.doubleValue
            guard double.rounded() == double, abs(double) < 9.0e15 else { return nil }
            return Int(double)
        }
        return nil
    }
}

/// Writes safetensors files (used by the random checkpoint writer and by tests that craft inputs).
public enum SafetensorsWriter {
    /// One tensor to write: its name, dtype, shape and little-endian bytes.
    public struct Tensor: Sendable {
        /// The tensor name.
        public var name: String
        /// The stored dtype.
        public var dtype: DType
        /// The shape, outermost dimension first.
        public var shape: [Int]
        /// The little-endian bytes, `shape.product × dtype.byteCount` of them.
        public var bytes: [UInt8]
        /// Set for one-byte elements written as they are (safetensors `U8`: MXFP4 blocks and scales;
        /// `F8_E4M3`: FP8 weights); `dtype` is then ignored and `byteDTypeName` names them.
        public var isBytes = false
        /// The safetensors dtype of a one-byte tensor (`isBytes`).
        public var byteDTypeName = "U8"

        /// A U8 tensor of `bytes`, one a element.
        public init(name: String, shape: [Int], u8 bytes: [UInt8]) {
            self.init(name: name, dtype: .f32, shape: shape, bytes: bytes)
            isBytes = true
        }

        /// An `F8_E4M3` tensor of float8_e4m3fn `bytes`, one a element (an FP8 weight).
        public init(name: String, shape: [Int], fp8E4M3 bytes: [UInt8]) {
            self.init(name: name, shape: shape, u8: bytes)
            byteDTypeName = FP8Quantization.dtypeName
        }

        /// Creates a tensor; `bytes.count` must be `shape.product × dtype.byteCount`.
        public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }

        /// Creates a tensor from f32 values stored as `dtype` (rounded to nearest even).
        public init(name: String, shape: [Int], values: [Float], storedAs dtype: DType) {
            precondition(
                shape.reduce(1, *) == values.count, "tensor \(name): \(values.count) values for shape \(shape)")
            self.init(name: name, dtype: dtype, shape: shape, bytes: encodeFloats(values, as: dtype))
        }
    }

    /// Encodes `tensors` in the given order as one safetensors file (header padded to 8 bytes).
    /// - Returns: the file's bytes.
    public static func encode(_ tensors: [Tensor], metadata: [String: String] = ["format": "pt"]) -> [UInt8] {
        var fields: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            fields.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        var offset = 0
        for tensor in tensors {
            precondition(
                tensor.bytes.count == tensor.shape.reduce(1, *) * (tensor.isBytes ? 1 : tensor.dtype.byteCount),
                "tensor \(tensor.name): byte count does not match its shape")
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            let dtype = tensor.isBytes ? tensor.byteDTypeName : tensor.dtype.safetensorsName
            fields.append(
                "\(jsonString(tensor.name)):{\"dtype\":\"\(dtype)\",\"shape\":[\(shape)],"
                    + "\"data_offsets\":[\(offset),\(offset + tensor.bytes.count)]}")
            offset += tensor.bytes.count
        }
        var header = Array("{\(fields.joined(separator: ","))}".utf8)
        // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
        while header.count % 8 != 0 { header.append(UInt8(ascii: " ")) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8 + header.count + offset)
        let length = UInt64(header.count)
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: length >> UInt64(shift))) }
        bytes.append(contentsOf: header)
        for tensor in tensors { bytes.append(contentsOf: tensor.bytes) }
        return bytes
    }

    /// Writes `tensors` as a safetensors file at `url`.
    public static func write(_ tensors: [Tensor], to url: URL) throws {
        try Data(encode(tensors)).write(to: url)
    }

    private static func jsonString(_ value: String) -> String {
        var escaped = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case _ where scalar.value < 0x20: escaped += String(format: "\\u%04x", scalar.value)
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped + "\""
    }
}
