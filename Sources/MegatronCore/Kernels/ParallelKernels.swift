import CKernels

/// How the CPU kernels split work across the device's threads.
extension CPUDevice {
    /// Elements below which a second thread costs more than it saves (about 2 µs to wake it).
    static let minimumElementsPerTask = 1 << 17

    /// `parallelFor` over `count` flat elements, in chunks worth waking a thread for.
    func parallelElements(_ count: Int, _ body: @Sendable (Range<Int>) -> Void) {
        parallelFor(count, minimumPerTask: Self.minimumElementsPerTask) { range, _ in body(range) }
    }

    /// `parallelFor` over the rows of a [rows, columns] tensor.
    func parallelRows(_ rows: Int, columns: Int, _ body: @Sendable (Range<Int>, Int) -> Void) {
        parallelFor(rows, minimumPerTask: max(1, Self.minimumElementsPerTask / max(columns, 1)), body)
    }

    /// Runs a row-split kernel that also accumulates per-column sums (parameter gradients such as
    /// dγ, dβ, dbias) into `targets`. With one task, the kernel writes the targets directly; with
    /// several, each task gets zeroed partial rows, added into the targets in task order afterwards,
    /// so the result does not depend on scheduling.
    func parallelRowsAccumulating(_ rows: Int, columns: Int, into targets: [Tensor?],
                                  _ body: @Sendable (Range<Int>, [UnsafeMutablePointer<Float>?]) -> Void) throws {
        let tasks = taskCount(rows, minimumPerTask: max(1, Self.minimumElementsPerTask / max(columns, 1)))
        if tasks <= 1 {
            body(0 ..< rows, targets.map { $0?.floats })
            return
        }
        let width = targets.count * columns
        let partials = try Tensor(shape: [tasks, width], on: self)
        parallelFor(rows, minimumPerTask: max(1, Self.minimumElementsPerTask / max(columns, 1))) { range, task in
            let base = partials.floats + task * width
            body(range, targets.indices.map { targets[$0] == nil ? nil : base + $0 * columns })
        }
        for task in 0 ..< tasks {
            for (index, target) in targets.enumerated() {
                guard let target else { continue }
                mg_axpy(target.floats, partials.floats + task * width + index * columns, 1, columns)
            }
        }
    }
}

/// A pointer that tasks of one `parallelFor` may share because each writes its own elements.
struct TaskSlots<Element>: @unchecked Sendable {
    let base: UnsafeMutablePointer<Element>

    /// `count` slots initialised to `value`; release with `deallocate()`.
    init(count: Int, value: Element) {
        base = .allocate(capacity: count)
        base.initialize(repeating: value, count: count)
    }

    subscript(task: Int) -> Element {
        get { base[task] }
        nonmutating set { base[task] = newValue }
    }

    func deallocate() { base.deallocate() }
}
