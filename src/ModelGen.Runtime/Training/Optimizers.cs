using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using ModelGen.Kernels;

namespace ModelGen.Training;

/// <summary>
/// An optimizer updates a model's one contiguous parameter buffer from its one gradient buffer. State
/// (momenta) is sized on the first step; one optimizer serves one model.
/// </summary>
public abstract class Optimizer
{
    protected Optimizer(float learningRate) => LearningRate = learningRate;

    public float LearningRate { get; set; }
    /// <summary>Steps taken so far (Keras' <c>optimizer.iterations</c>).</summary>
    public long Iterations { get; private set; }

    /// <summary>Applies one update. Called by the generated <c>TrainStep</c> after a finite loss.</summary>
    [MethodImpl(Compiled.Driver)]
    public void Step(Span<float> parameters, ReadOnlySpan<float> gradients)
    {
        Begin(parameters.Length, gradients.Length);
        Update(parameters, gradients);
    }

    /// <summary>What precedes a step's update, whole or in ranges: the buffers checked, the state sized, the step counted.</summary>
    [MethodImpl(Compiled.Driver)]
    internal void Begin(int parameterCount, int gradientCount)
    {
        if (gradientCount != parameterCount) throw new ArgumentException("Gradient and parameter buffers differ in length.");
        EnsureState(parameterCount);
        Iterations++;
    }

    /// <summary>
    /// Whether each parameter's new value depends on its own gradient and state alone (SGD's, Adam's): then ranges of the
    /// buffer may be updated apart, each on its own core (<see cref="BatchParts.Update"/>), by <see cref="UpdateRange"/>.
    /// </summary>
    internal virtual bool UpdatesEachParameterAlone => false;

    /// <summary>
    /// The update of parameters [<paramref name="offset"/>, offset + parameters.Length) of the buffer, after <see cref="Begin"/>,
    /// for an optimizer that <see cref="UpdatesEachParameterAlone"/>.
    /// </summary>
    internal virtual void UpdateRange(Span<float> parameters, ReadOnlySpan<float> gradients, int offset) =>
        throw new NotSupportedException($"{GetType().Name} updates its parameters together.");

    /// <summary>Forgets all state (momenta, step count), as a freshly constructed optimizer.</summary>
    public virtual void Reset() => Iterations = 0;

    protected abstract void EnsureState(int parameterCount);
    protected abstract void Update(Span<float> parameters, ReadOnlySpan<float> gradients);

    /// <summary>The smallest normal float32 (FLT_MIN).</summary>
    protected const float SmallestNormal = 1.17549435e-38f;

    /// <summary>
    /// Momenta of parameters whose gradient stays zero (dead ReLU units, unused inputs) decay geometrically into
    /// subnormal floats, which cost the CPU ~100x per operation and made a step 4x slower after a few hundred
    /// steps. TensorFlow, Keras' reference backend, runs with flush-to-zero for the same reason; so do we.
    /// </summary>
    protected static float FlushToZero(float value) => MathF.Abs(value) < SmallestNormal ? 0f : value;

    /// <summary>Per-parameter state, on a cache line like the parameters it runs beside.</summary>
    [MethodImpl(Compiled.Driver)]
    protected static AlignedBuffer Allocate(ref AlignedBuffer? state, int length)
    {
        if (state is null) return state = new AlignedBuffer(length);
        if (state.Length != length)
        {
            throw new InvalidOperationException(
                $"This optimizer holds state for {state.Length} parameters but was given {length}: use one optimizer per model, or Reset() it.");
        }
        return state;
    }
}

/// <summary>Keras' SGD: m = momentum·m - lr·g; p += m (nesterov: p += momentum·m - lr·g).</summary>
public sealed class Sgd : Optimizer
{
    private AlignedBuffer? velocity;

    public Sgd(float learningRate = 0.01f, float momentum = 0f, bool nesterov = false) : base(learningRate)
    {
        if (momentum < 0f || momentum > 1f) throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "momentum must be in [0, 1].");
        Momentum = momentum;
        Nesterov = nesterov;
    }

    public float Momentum { get; }
    public bool Nesterov { get; }

    public override void Reset() { base.Reset(); velocity = null; }

    protected override void EnsureState(int parameterCount)
    {
        if (Momentum != 0f) Allocate(ref velocity, parameterCount);
    }

    [MethodImpl(Compiled.Driver)]
    protected override void Update(Span<float> parameters, ReadOnlySpan<float> gradients) => UpdateRange(parameters, gradients, 0);

    internal override bool UpdatesEachParameterAlone => true;

    [MethodImpl(Compiled.Kernel)]
    internal override void UpdateRange(Span<float> parameters, ReadOnlySpan<float> gradients, int offset)
    {
        float lr = LearningRate;
        if (Momentum == 0f)
        {
            for (int i = 0; i < parameters.Length; i++) parameters[i] += -gradients[i] * lr;
            return;
        }
        var m = velocity!.Span.Slice(offset, parameters.Length);
        for (int i = 0; i < parameters.Length; i++)
        {
            m[i] = FlushToZero(-gradients[i] * lr + m[i] * Momentum);
            parameters[i] += Nesterov ? -gradients[i] * lr + m[i] * Momentum : m[i];
        }
    }
}

/// <summary>
/// Keras' Adam: m += (g - m)(1 - β1); v += (g² - v)(1 - β2); p -= α·m / (√v + ε) with
/// α = lr·√(1 - β2^t) / (1 - β1^t). Note ε is added to √v, not to the bias-corrected √v̂ as in PyTorch.
/// </summary>
public sealed class Adam : Optimizer
{
    private AlignedBuffer? firstMoment, secondMoment;

    public Adam(float learningRate = 0.001f, float beta1 = 0.9f, float beta2 = 0.999f, float epsilon = 1e-7f) : base(learningRate)
    {
        Beta1 = beta1;
        Beta2 = beta2;
        Epsilon = epsilon;
    }

    public float Beta1 { get; }
    public float Beta2 { get; }
    public float Epsilon { get; }

    public override void Reset() { base.Reset(); firstMoment = null; secondMoment = null; }

    protected override void EnsureState(int parameterCount)
    {
        Allocate(ref firstMoment, parameterCount);
        Allocate(ref secondMoment, parameterCount);
    }

    /// <summary>
    /// Elements per part of an update. Each element's update is independent and its square root and division make it
    /// compute-bound, so the two cores take parts of a large model's buffer (the MLP's 235K parameters: ~140 -> ~75 us).
    /// </summary>
    private const int PartSize = 16384;

    [MethodImpl(Compiled.Driver)]
    protected override void Update(Span<float> parameters, ReadOnlySpan<float> gradients) => UpdateRange(parameters, gradients, 0);

    internal override bool UpdatesEachParameterAlone => true;

    [MethodImpl(Compiled.Driver)]
    internal override unsafe void UpdateRange(Span<float> parameters, ReadOnlySpan<float> gradients, int offset)
    {
        long t = Iterations;
        float alpha = (float)(LearningRate * Math.Sqrt(1 - Math.Pow(Beta2, t)) / (1 - Math.Pow(Beta1, t)));
        fixed (float* p = parameters, g = gradients, m = firstMoment!.Span.Slice(offset, parameters.Length), v = secondMoment!.Span.Slice(offset, parameters.Length))
        {
            var job = new Job(p, g, m, v, parameters.Length, new Coefficients(Beta1, Beta2, Epsilon, alpha));
            Helper.For((parameters.Length + PartSize - 1) / PartSize, &UpdatePart, in job);
        }
    }

    private readonly record struct Coefficients(float Beta1, float Beta2, float Epsilon, float Alpha);

    private readonly unsafe struct Job(float* parameters, float* gradients, float* m, float* v, int length, Coefficients coefficients)
    {
        public readonly float* Parameters = parameters, Gradients = gradients, M = m, V = v;
        public readonly int Length = length;
        public readonly Coefficients Coefficients = coefficients;
    }

    [MethodImpl(Compiled.Driver)]
    private static unsafe void UpdatePart(void* state, int part, int worker)
    {
        ref readonly var job = ref *(Job*)state;
        int start = part * PartSize, length = Math.Min(PartSize, job.Length - start);
        var parameters = new Span<float>(job.Parameters + start, length);
        var gradients = new ReadOnlySpan<float>(job.Gradients + start, length);
        var m = new Span<float>(job.M + start, length);
        var v = new Span<float>(job.V + start, length);
        var k = job.Coefficients;
        int i = Simd.Current switch
        {
            SimdPath.Avx512 => UpdateVectors<Lanes512, Vector512<float>>(parameters, gradients, m, v, k),
            SimdPath.Avx2 => UpdateVectors<Lanes256, Vector256<float>>(parameters, gradients, m, v, k),
            _ => UpdateVectors<Lanes128, Vector128<float>>(parameters, gradients, m, v, k),
        };
        for (; i < length; i++)
        {
            float g = gradients[i];
            m[i] = FlushToZero(m[i] + (g - m[i]) * (1f - k.Beta1));
            v[i] = FlushToZero(v[i] + (g * g - v[i]) * (1f - k.Beta2));
            parameters[i] -= m[i] * k.Alpha / (MathF.Sqrt(v[i]) + k.Epsilon);
        }
    }

    /// <summary>The vectorised update, one pass over all four buffers; returns how many elements it covered.</summary>
    [MethodImpl(Compiled.Kernel)]
    private static int UpdateVectors<TLanes, TVector>(Span<float> parameters, ReadOnlySpan<float> gradients, Span<float> m, Span<float> v, Coefficients k)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        TVector oneMinusBeta1 = TLanes.Broadcast(1f - k.Beta1), oneMinusBeta2 = TLanes.Broadcast(1f - k.Beta2);
        TVector epsilon = TLanes.Broadcast(k.Epsilon), step = TLanes.Broadcast(k.Alpha);
        int count = parameters.Length - parameters.Length % TLanes.Count;
        ref float p = ref MemoryMarshal.GetReference(parameters);
        ref float g = ref MemoryMarshal.GetReference(gradients);
        ref float m0 = ref MemoryMarshal.GetReference(m);
        ref float v0 = ref MemoryMarshal.GetReference(v);
        for (int i = 0; i < count; i += TLanes.Count)
        {
            TVector gi = TLanes.Load(ref Unsafe.Add(ref g, i));
            TVector mi = TLanes.Load(ref Unsafe.Add(ref m0, i));
            TVector vi = TLanes.Load(ref Unsafe.Add(ref v0, i));
            mi = TLanes.FlushSubnormal(TLanes.Add(mi, TLanes.Multiply(TLanes.Subtract(gi, mi), oneMinusBeta1)));
            vi = TLanes.FlushSubnormal(TLanes.Add(vi, TLanes.Multiply(TLanes.Subtract(TLanes.Multiply(gi, gi), vi), oneMinusBeta2)));
            TLanes.Store(ref Unsafe.Add(ref m0, i), mi);
            TLanes.Store(ref Unsafe.Add(ref v0, i), vi);
            TVector update = TLanes.Divide(TLanes.Multiply(mi, step), TLanes.Add(TLanes.Sqrt(vi), epsilon));
            TLanes.Store(ref Unsafe.Add(ref p, i), TLanes.Subtract(TLanes.Load(ref Unsafe.Add(ref p, i)), update));
        }
        return count;
    }
}
