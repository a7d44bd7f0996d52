import CKernels

/// Memory-bound elementwise operations and reductions over fp32 tensors.
public enum Elementwise {
    /// destination = source (fp32, same element count), with vector stores split over the threads.
    public static func copy(_ source: Tensor, into destination: Tensor, on device: CPUDevice) throws {
        try source.expect(dtype: .float32, "copy", "source")
        try destination.expect(shape: source.shape, "copy", "destination")
        device.parallelElements(source.count) { r in
            mg_copy(destination.floats + r.lowerBound, source.floats + r.lowerBound, r.count)
        }
    }

    /// a + b, elementwise (the residual add).
    public static func add(_ a: Tensor, _ b: Tensor, on device: CPUDevice) throws -> Tensor {
        try a.expect(dtype: .float32, "add", "a")
        try b.expect(shape: a.shape, "add", "b")
        let y = try Tensor(shape: a.shape, on: device, zeroed: false)
        device.parallelElements(a.count) { r in
            mg_add(y.floats + r.lowerBound, a.floats + r.lowerBound, b.floats + r.lowerBound, r.count)
        }
        return y
    }

    /// y += α·x
    public static func axpy(_ y: Tensor, _ x: Tensor, alpha: Float, on device: CPUDevice) throws {
        try y.expect(dtype: .float32, "axpy", "y")
        try x.expect(shape: y.shape, "axpy", "x")
        device.parallelElements(y.count) { r in
            mg_axpy(y.floats + r.lowerBound, x.floats + r.lowerBound, alpha, r.count)
        }
    }

    /// y *= α
    public static func scale(_ y: Tensor, by alpha: Float, on device: CPUDevice) throws {
        try y.expect(dtype: .float32, "scale", "y")
        device.parallelElements(y.count) { r in mg_scale(y.floats + r.lowerBound, alpha, r.count) }
    }

    /// x[r, :] += bias, in place.
    public static func addBias(_ x: Tensor, _ bias: Tensor, on device: CPUDevice) throws {
        try x.expect(dtype: .float32, "addBias", "x")
        try bias.expect(shape: [x.columns], "addBias", "bias")
        device.parallelRows(x.rows, columns: x.columns) { r, _ in
            mg_bias_add(x.floats + r.lowerBound * x.columns, bias.floats, r.count, x.columns)
        }
    }

    /// sums += Σ_rows x: the gradient of a bias added to every row of x.
    public static func accumulateColumnSums(of x: Tensor, into sums: Tensor, on device: CPUDevice) throws {
        try x.expect(dtype: .float32, "accumulateColumnSums", "x")
        try sums.expect(shape: [x.columns], "accumulateColumnSums", "sums")
        try device.parallelRowsAccumulating(x.rows, columns: x.columns, into: [sums]) { r, out in
            mg_column_sum_accumulate(out[0], x.floats + r.lowerBound * x.columns, r.count, x.columns)
        }
    }

    /// √(Σ over all tensors of Σ x²), accumulated in double: the global L2 norm used for gradient
    /// clipping. NaN or inf anywhere gives a non-finite result.
    public static func globalL2Norm(_ tensors: [Tensor], on device: CPUDevice) throws -> Double {
        var total = 0.0
        let sums = TaskSlots(count: device.threads, value: 0.0)
        defer { sums.deallocate() }
        for t in tensors {
            try t.expect(dtype: .float32, "globalL2Norm", "tensor")
            let minimum = CPUDevice.minimumElementsPerTask
            device.parallelFor(t.count, minimumPerTask: minimum) { r, task in
                sums[task] = mg_sum_of_squares(t.floats + r.lowerBound, r.count)
            }
            for task in 0 ..< device.taskCount(t.count, minimumPerTask: minimum) { total += sums[task] }
        }
        return total.squareRoot()
    }
}
