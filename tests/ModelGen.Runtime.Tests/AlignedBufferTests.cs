using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// A model's buffers start on a cache line whatever the length, one after another as a model allocates them with other
/// allocations in between, and hold exactly their length, zeroed; slices stay inside the buffer.
/// </summary>
public class AlignedBufferTests
{
    [Fact]
    public void Buffers_start_on_a_cache_line_and_hold_their_length_zeroed()
    {
        var kept = new List<object>();
        foreach (int length in new[] { 0, 1, 3, 10, 16, 17, 255, 1000, 4099, 200_000, 235_146, 1_048_575, 1_048_576, 5_000_000 })
        {
            for (int copy = 0; copy < 3; copy++)
            {
                kept.Add(new float[length % 97 + copy]);
                var buffer = new AlignedBuffer(length);
                Assert.True(AlignedBuffer.LineOffset(buffer) == 0, $"{length} floats, copy {copy}: {AlignedBuffer.LineOffset(buffer)} bytes past a line");
                Assert.Equal(length, buffer.Length);
                Span<float> span = buffer;
                Assert.Equal(length, span.Length);
                Assert.True(span.IndexOfAnyExcept(0f) < 0);
                kept.Add(buffer);
            }
        }
    }

    /// <summary>
    /// Buffers of 4 MB and more come from uninitialized pinned arrays: they are zeroed even where the pinned heap hands back
    /// memory an earlier buffer wrote; and on Linux their whole 2 MB pages carry the huge-page advice (VmFlags "hg").
    /// </summary>
    [Fact]
    public unsafe void Large_buffers_are_zeroed_and_advised_onto_huge_pages()
    {
        const int length = 3_000_000; // 12 MB: five whole 2 MB pages at least
        for (int round = 0; round < 3; round++)
        {
            WriteOnesAndDrop(length);
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            var buffer = new AlignedBuffer(length);
            Assert.True(buffer.Span.IndexOfAnyExcept(0f) < 0, $"round {round}: a large buffer is not zeroed");
            if (!OperatingSystem.IsLinux() || !Directory.Exists("/sys/kernel/mm/transparent_hugepage")) continue;
            nint page = 2 << 20, first = (nint)Unsafe.AsPointer(ref buffer.Span[0]);
            nint inside = (first + page - 1) & ~(page - 1);
            Assert.Contains("hg", VmFlagsAt(inside + page / 2));
            GC.KeepAlive(buffer);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void WriteOnesAndDrop(int length) => new AlignedBuffer(length).Span.Fill(1f);

    /// <summary>The VmFlags of the mapping of this process that holds <paramref name="address"/> (/proc/self/smaps).</summary>
    private static string[] VmFlagsAt(nint address)
    {
        bool inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-'), space = line.IndexOf(' ');
            if (dash > 0 && space > dash && long.TryParse(line[..dash], System.Globalization.NumberStyles.HexNumber, null, out long start)
                && long.TryParse(line[(dash + 1)..space], System.Globalization.NumberStyles.HexNumber, null, out long end))
            {
                inside = start <= address && address < end;
            }
            else if (inside && line.StartsWith("VmFlags:")) return line["VmFlags:".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        }
        throw new InvalidOperationException($"no mapping holds {address:x}");
    }

    /// <summary>
    /// Inside a guarded scope (the guarded operand tests), the runtime's own buffers on this thread lie against a guard page,
    /// each exactly as long as asked for: a kernel's scratch (one kept across calls is renewed when the length changes), a
    /// rented scratch, a workspace's or an optimizer's buffer. After the scope a kept scratch is replaced, its pages unmapped.
    /// </summary>
    [Fact]
    public unsafe void A_guarded_scope_places_the_runtimes_own_buffers_against_a_guard_page()
    {
        int page = Environment.SystemPageSize;
        // Whether a span ends on a page boundary (atEnd), or starts on one.
        bool Placed<T>(Span<T> span, bool atEnd) where T : unmanaged
        {
            var bytes = MemoryMarshal.AsBytes(span);
            nint first = (nint)Unsafe.AsPointer(ref bytes[0]);
            return (atEnd ? first + bytes.Length : first) % page == 0;
        }
        AlignedBuffer? kept = null;
        nint guarded = 0;
        AlignedBuffer.Ensure(ref kept, 1000); // an unguarded scratch, long enough for what follows
        foreach (bool atEnd in new[] { true, false })
        {
            using (GuardedPages.Guard(atEnd))
            {
                foreach (int length in new[] { 10, 10, 37, 5 })
                {
                    var scratch = AlignedBuffer.Ensure(ref kept, length);
                    Assert.True(scratch.Length == length && Placed(scratch, atEnd), $"a kept scratch of {length} ({(atEnd ? "end" : "start")})");
                }
                var again = AlignedBuffer.Ensure(ref kept, 5);
                guarded = (nint)Unsafe.AsPointer(ref again[0]);
                Assert.True(guarded == (nint)Unsafe.AsPointer(ref AlignedBuffer.Ensure(ref kept, 5)[0]), "the same length keeps its pages");
                using (var rented = Scratch<float>.Rent(13))
                using (var ints = Scratch<int>.RentUncleared(3))
                {
                    Assert.True(rented.Span.Length == 13 && Placed(rented.Span, atEnd) && rented.Span.IndexOfAnyExcept(0f) < 0);
                    Assert.True(ints.Span.Length == 3 && Placed(ints.Span, atEnd));
                }
                var buffer = new AlignedBuffer(21);
                Assert.True(buffer.Length == 21 && Placed(buffer.Span, atEnd));
                Assert.Equal(0, AlignedBuffer.Empty.Length);
            }
            // After the scope the pages are gone: the scratch must be new (writing to the old one would fault), and aligned.
            var after = AlignedBuffer.Ensure(ref kept, 5);
            Assert.True(after.Length >= 5 && (nint)Unsafe.AsPointer(ref after[0]) != guarded && AlignedBuffer.LineOffset(after) == 0, "after the scope, an unguarded scratch");
            after.Fill(1f);
        }
        Assert.False(GuardedPages.Guarding);
    }

    [Fact]
    public void Slices_are_views_inside_the_buffer()
    {
        var buffer = new AlignedBuffer(40);
        buffer.AsSpan(8, 4).Fill(2f);
        Assert.Equal(new float[] { 0, 2, 2, 2, 2, 0 }, buffer.Span.Slice(7, 6).ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => buffer.AsSpan(38, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AlignedBuffer(-1));
    }

    [Fact]
    public void A_sliced_buffer_shares_the_memory_and_stays_on_a_line_at_multiples_of_16()
    {
        var arena = new AlignedBuffer(100);
        var first = arena.Slice(0, 48);
        var second = arena.Slice(32, 64);
        second.Span.Fill(3f);
        Assert.Equal(0f, first.Span[31]);
        Assert.Equal(3f, first.Span[32]); // one set of floats under both views
        Assert.Equal(64, second.Length);
        Assert.Equal(0, AlignedBuffer.LineOffset(second));
        Assert.Equal(4, AlignedBuffer.LineOffset(arena.Slice(1, 10)));
        Assert.Throws<ArgumentOutOfRangeException>(() => arena.Slice(40, 61));
        Assert.Throws<ArgumentOutOfRangeException>(() => arena.Slice(-1, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => second.Slice(0, 65)); // a slice of a slice stays inside it
    }

    [Fact]
    public void Model_buffers_count_every_byte_they_hand_out()
    {
        var buffers = new ModelBuffers();
        buffers.Floats(1000);
        buffers.Ints(10);
        var workspace = buffers.Workspace(new RecurrentWorkspace(RecurrentCell.Lstm, maxBatchSize: 2, steps: 3, features: 4, units: 5, forTraining: true));
        // An LSTM direction: inputs, projections and their gradients per step, states and cells with the initial one, the
        // mask, the state and cell gradients, the tanh of a step's cells, the time-major input gradient and the recurrent
        // kernel transposed. For inference only: no gradients and no transposed kernel, and the states and cells of two steps.
        int rows = 2 * 3, lstm = rows * 4 + 2 * rows * 20 + 2 * (4 * 2 * 5) + rows + 3 * (2 * 5) + rows * 4 + 5 * 20;
        int lstmInference = rows * 4 + rows * 20 + 2 * (2 * 2 * 5) + rows + 2 * 5;
        Assert.Equal(lstm * 4L, workspace.Bytes);
        Assert.Equal(4000 + 40 + lstm * 4L, buffers.Bytes);
        Assert.Equal(lstmInference * 4L, new RecurrentWorkspace(RecurrentCell.Lstm, maxBatchSize: 2, steps: 3, features: 4, units: 5, forTraining: false).Bytes);
        // A GRU keeps its four gate rows a step (z, r, h̃ and the recurrent h-part, for backward only) and the recurrent
        // gradients besides; its scratch is the recurrent product, three units wide.
        int gru = rows * 4 + 2 * rows * 15 + rows * 20 + 4 * 2 * 5 + rows + 2 * (2 * 5) + 2 * 15 + rows * 15 + rows * 4 + 5 * 15;
        int gruInference = rows * 4 + rows * 15 + 2 * 2 * 5 + rows + 2 * 15;
        Assert.Equal(gru * 4L, new RecurrentWorkspace(RecurrentCell.Gru, maxBatchSize: 2, steps: 3, features: 4, units: 5, forTraining: true).Bytes);
        Assert.Equal(gruInference * 4L, new RecurrentWorkspace(RecurrentCell.Gru, maxBatchSize: 2, steps: 3, features: 4, units: 5, forTraining: false).Bytes);
        // Each of a workspace's arrays starts on a cache line, as the model's own buffers do.
        var attention = new AttentionWorkspace(3, querySteps: 5, valueSteps: 7, queryFeatures: 9, keyFeatures: 9, valueFeatures: 9, heads: 2, keyDim: 3, valueDim: 5, causal: false, forTraining: true);
        Assert.All(new[] { workspace.Inputs, workspace.Projected, workspace.States, workspace.Cells, workspace.Mask, workspace.InputGradients, workspace.Scratch,
            attention.Queries, attention.Keys, attention.Values, attention.Scores, attention.Context, attention.ContextGradient }, array => Assert.Equal(0, AlignedBuffer.LineOffset(array)));
        Assert.Equal(" Buffers for batches of up to 8: 1.50 KB", ModelBuffers.Describe(8, 1536, gradientFloats: 20, separateGradientFloats: 20));
        Assert.Equal(" Buffers for batches of up to 8: 1.50 KB (gradients sharing 512.00 B by liveness, against 1.00 KB one per tensor)",
            ModelBuffers.Describe(8, 1536, gradientFloats: 16, separateGradientFloats: 32, valueFloats: 48, separateValueFloats: 40));
        Assert.Equal(" Buffers for batches of up to 8: 1.50 KB (an inference copy's values sharing 1.00 KB by liveness, against 2.00 KB one per tensor)",
            ModelBuffers.Describe(8, 1536, gradientFloats: 20, separateGradientFloats: 20, valueFloats: 32, separateValueFloats: 64));
        Assert.Equal(" Buffers for batches of up to 8: 1.50 KB (gradients sharing 512.00 B by liveness, against 1.00 KB one per tensor; " +
            "an inference copy's values sharing 1.00 KB by liveness, against 2.00 KB one per tensor)",
            ModelBuffers.Describe(8, 1536, gradientFloats: 16, separateGradientFloats: 32, valueFloats: 32, separateValueFloats: 64));
    }

    [Fact]
    public void Buffers_for_training_share_the_gradients_and_a_copy_that_only_predicts_gets_none()
    {
        var training = new ModelBuffers(sharedGradientFloats: 64);
        var first = training.Gradient(0, 32);
        var second = training.Gradient(16, 48);
        first.Span[16] = 5f;
        Assert.Equal(5f, second.Span[0]); // gradients never live at once share floats
        Assert.Equal(10, training.TrainingFloats(10).Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => training.Gradient(32, 33));
        Assert.Equal((64 + 10) * 4L, training.Bytes);

        // Values: each its own buffer in a model that trains (backward reads them), slices of one shared buffer in a copy that only predicts.
        var trainingValue = training.Value(0, 16);
        trainingValue.Span[0] = 3f;
        Assert.Equal(0f, training.Value(0, 16).Span[0]);
        Assert.Equal((64 + 10 + 32) * 4L, training.Bytes);

        var predicting = new ModelBuffers(sharedGradientFloats: 64, sharedValueFloats: 48, forTraining: false);
        Assert.False(predicting.ForTraining);
        Assert.Equal(48 * 4L, predicting.Bytes);
        var early = predicting.Value(0, 32);
        var late = predicting.Value(16, 32);
        early.Span[16] = 7f;
        Assert.Equal(7f, late.Span[0]); // values never live at once share floats
        Assert.Throws<ArgumentOutOfRangeException>(() => predicting.Value(32, 17));
        Assert.Equal(48 * 4L, predicting.Bytes);
        Assert.Equal(0, predicting.Gradient(16, 48).Length);
        Assert.Equal(0, predicting.TrainingFloats(10).Length);
        Assert.Equal(7, predicting.Floats(7).Length);
        Assert.Empty(predicting.TrainingInts(5));
        Assert.Equal((48 + 7) * 4L, predicting.Bytes);

        // A convolution's patches (6x6 positions of 3x3x32 here): only the kernel gradient reads them.
        var window = new Window(8, 8, 32, 3, 3, 1, 1, Same: false);
        Assert.Equal(2 * 36 * 288, training.Patches(window, maxBatchSize: 2).Length);
        Assert.Equal(0, predicting.Patches(window, maxBatchSize: 2).Length);

        // A convolution's output that a 2x2 max pooling reads: pooled in registers, in training and at inference, where its
        // windows suit the direct kernel on every SIMD path (3x3x1), written where they may not (3x3x32).
        var narrow = new Window(8, 8, 1, 3, 3, 1, 1, Same: false);
        var pool = new Window(6, 6, 4, 2, 2, 2, 2, Same: false);
        Assert.Equal(0, predicting.PooledConvolution(narrow, pool, 144).Length);
        Assert.Equal(0, training.PooledConvolution(narrow, pool, 144).Length);
        Assert.Equal(144, predicting.PooledConvolution(window, pool, 144).Length);
        Assert.Equal(144, training.PooledConvolution(window, pool, 144).Length);
    }
}
