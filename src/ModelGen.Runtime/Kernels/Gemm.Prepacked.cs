using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

/// <summary>
/// A B operand (a layer's kernel) packed once, in the order the packed path's micro-kernels read it (Gemm.Packed.cs): depth
/// blocks of <see cref="Gemm"/>'s block depth, each holding every tile of columns in turn, zero-padded to whole tiles. A
/// product over many rows against fixed weights otherwise packs B on every call. The panels are a copy: they do not follow
/// later changes to the values they were packed from.
/// </summary>
public sealed class PackedMatrix
{
    private readonly AlignedBuffer panels;

    internal PackedMatrix(AlignedBuffer panels, int rows, int columns, int tileColumns)
    {
        this.panels = panels;
        Rows = rows;
        Columns = columns;
        TileColumns = tileColumns;
    }

    /// <summary>B's rows: the product's depth, a dense layer's inputs.</summary>
    public int Rows { get; }
    /// <summary>B's columns: a dense layer's units.</summary>
    public int Columns { get; }
    /// <summary>Columns per tile, as the SIMD path that packed them reads them; a path with other tiles packs B as before.</summary>
    internal int TileColumns { get; }
    /// <summary>Bytes of the panels.</summary>
    public long Bytes => (long)panels.Length * sizeof(float);

    internal unsafe float* Data => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(panels.Span));
    internal int Length => panels.Length;
    internal Span<float> Panels => panels.Span;
}

/// <summary>
/// Room for panels that are packed again whenever their B changes: a recurrent kernel, which every step of a pass reads
/// but a training step changes, is packed once per pass into the same memory instead of by each step's product. Sized for
/// any SIMD path, and for each B shape it is given (U forward, Uᵀ backward) it keeps a <see cref="PackedMatrix"/> over the
/// same memory, so a pass allocates nothing.
/// </summary>
internal sealed class RepackedPanels(AlignedBuffer panels)
{
    private readonly List<PackedMatrix> shapes = new(2);

    /// <summary>B(k,n) packed into this memory for the SIMD path of the products that read it; valid until the next call.</summary>
    [MethodImpl(Compiled.Driver)]
    public PackedMatrix Pack(ReadOnlySpan<float> b, int k, int n)
    {
        int tileColumns = Gemm.PanelTileColumns(k, n);
        PackedMatrix? packed = null;
        foreach (var shape in shapes) // a loop, not a lambda: a closure per pass would be an allocation per training step
            if (shape.Rows == k && shape.Columns == n && shape.TileColumns == tileColumns) { packed = shape; break; }
        if (packed is null)
        {
            if (Gemm.PanelFloatsOnAnyPath(k, n) > panels.Length) throw new ArgumentException($"Panels of {panels.Length} floats cannot hold a {k}x{n} B.", nameof(b));
            shapes.Add(packed = new PackedMatrix(panels, k, n, tileColumns));
        }
        Gemm.Fill(packed, b);
        return packed;
    }
}

public static partial class Gemm
{
    /// <summary>
    /// B(k,n), row-major, packed for the SIMD path of the products that read it, to pass to <see cref="Multiply"/> as its <c>packedB</c> as long as
    /// <paramref name="b"/> holds the same values. Costs a copy of B.
    /// </summary>
    public static PackedMatrix Pack(ReadOnlySpan<float> b, int k, int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(k);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        int tileColumns = PanelTileColumns(k, n);
        var packed = new PackedMatrix(new AlignedBuffer(PanelFloats(k, n, tileColumns)), k, n, tileColumns);
        Fill(packed, b);
        return packed;
    }

    /// <summary>Packs B(packed.Rows, packed.Columns) into <paramref name="packed"/>'s panels, on the path whose tiles they have (<see cref="PanelPath"/>).</summary>
    [MethodImpl(Compiled.Driver)]
    internal static void Fill(PackedMatrix packed, ReadOnlySpan<float> b)
    {
        int k = packed.Rows, n = packed.Columns;
        if (b.Length < (long)k * n) throw new ArgumentException($"Gemm.Pack: B has {b.Length} floats, a {k}x{n} matrix needs {(long)k * n}.", nameof(b));
        var matrix = new Matrix(b, n, 1);
        switch (PanelPath(k, n))
        {
            case SimdPath.Avx512: PackPanels<Lanes512, Vector512<float>>(matrix, k, n, packed.TileColumns, packed.Panels); break;
            case SimdPath.Avx2: PackPanels<Lanes256, Vector256<float>>(matrix, k, n, packed.TileColumns, packed.Panels); break;
            default: PackPanels<Lanes128, Vector128<float>>(matrix, k, n, packed.TileColumns, packed.Panels); break;
        }
    }

    /// <summary>
    /// The SIMD path of the products that read B(k,n)'s panels: <see cref="Multiply"/>'s, whose A is row-major, of more than
    /// <see cref="FewRows"/> rows (<see cref="ReadsPanels"/>).
    /// </summary>
    private static SimdPath PanelPath(int k, int n) => PathOf(new Matrix(default, k, 1), FewRows + 1, k, n);

    /// <summary>Columns per tile of B(k,n)'s panels on <see cref="PanelPath"/>.</summary>
    internal static int PanelTileColumns(int k, int n) => PanelPath(k, n) switch
    {
        SimdPath.Avx512 => TileColumns<Lanes512, Vector512<float>>(n),
        SimdPath.Avx2 => TileColumns<Lanes256, Vector256<float>>(n),
        _ => TileColumns<Lanes128, Vector128<float>>(n),
    };

    /// <summary>Floats of B(k,n)'s panels on whichever SIMD path packs them: columns padded to the widest path's tiles.</summary>
    internal static int PanelFloatsOnAnyPath(int k, int n) => PanelFloats(k, n, 2 * Lanes512.Count);

    /// <summary>
    /// Whether a product of <paramref name="m"/> rows reads B(<paramref name="k"/>, <paramref name="n"/>) faster from panels
    /// packed ahead than as it does alone: more than <see cref="FewRows"/> rows, which pack B themselves (up to that, they
    /// read a row-major B where it lies), or up to three rows streamed that would take more than one pass over B where it
    /// lies, each striding B's rows, and stream the panels' tiles instead (<see cref="StreamFromPanels"/>; one pass reads
    /// whole rows one after another anyway).
    /// </summary>
    internal static bool ReadsPanels(int m, int k, int n)
    {
        if (m > FewRows) return true;
        int slots = StreamSlots(n, Simd.WidthOf(PathOf(new Matrix(default, k, 1), m, k, n)));
        return m < StreamingRows && StreamStrides(m, slots, slots);
    }

    /// <summary>Whether a product of some count of rows up to <paramref name="rows"/> reads B(k,n) from panels packed ahead (<see cref="ReadsPanels"/>).</summary>
    internal static bool ReadsPanelsUpTo(int rows, int k, int n) => ReadsPanels(rows, k, n) || ReadsPanels(Math.Min(rows, StreamingRows - 1), k, n);

    /// <summary>Floats of B(k,n)'s panels: every column tile whole, zero-padded.</summary>
    private static int PanelFloats(int k, int n, int tileColumns) => k * PaddedColumns(n, tileColumns);

    /// <summary>Columns of B's panels: <paramref name="n"/> rounded up to whole tiles.</summary>
    private static int PaddedColumns(int n, int tileColumns) => (n + tileColumns - 1) / tileColumns * tileColumns;

    /// <summary>
    /// Packs all of B into <paramref name="panels"/> in the layout <see cref="PackedPanels"/> reads, both cores taking parts
    /// (a depth block's <see cref="PackedColumnParts"/>th of the columns each): the panels depend only on B, so on any thread
    /// count they are the same.
    /// <paramref name="streamed"/> writes them past the caches (<see cref="PackB"/>).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void PackPanels<TLanes, TVector>(in Matrix b, int k, int n, int tileColumns, Span<float> panels, bool streamed = false)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int depthBlocks = (k + DepthBlock - 1) / DepthBlock, tiles = PaddedColumns(n, tileColumns) / tileColumns;
        int partColumns = (tiles + PackedColumnParts - 1) / PackedColumnParts * tileColumns;
        fixed (float* pb = b.Data, pp = panels)
        {
            var job = new PackingJob(new PinnedMatrix(pb, b), PackedPanels.Over(pp, k, n, tileColumns), k, n, tileColumns, partColumns, streamed);
            Helper.For(depthBlocks * job.ColumnParts, &PackPart<TLanes, TVector>, in job);
        }
    }

    /// <summary>
    /// Parts of a depth block's columns that <see cref="PackPanels"/> deals to the cores. On the Intel Xeon two parts (1024
    /// columns of 2048, a page of each row) packed a 2048x2048 B faster alone, 0.69-0.73 ms on two cores against 0.78-0.81,
    /// and eight slower (0.88-0.89), but 2048^3 took as long either way (50.5-54.4 ms, four rounds in turns).
    /// </summary>
    private const int PackedColumnParts = 4;

    /// <summary>Part <paramref name="index"/> of <see cref="PackPanels"/>: one depth block's tiles from one column part.</summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void PackPart<TLanes, TVector>(void* state, int index, int worker) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        ref readonly PackingJob job = ref *(PackingJob*)state;
        int pc = index / job.ColumnParts * DepthBlock, jc = index % job.ColumnParts * job.PartColumns;
        int kc = Math.Min(DepthBlock, job.K - pc), nc = Math.Min(job.PartColumns, job.N - jc);
        PackB<TLanes, TVector>(job.B.From(), pc, kc, jc, nc, job.TileColumns, job.Panels.Block(pc, kc, jc), job.Streamed);
    }

    /// <summary>B and its panels as pointers, for parts packed on either thread.</summary>
    private readonly unsafe struct PackingJob(PinnedMatrix b, PackedPanels panels, int k, int n, int tileColumns, int partColumns, bool streamed)
    {
        public readonly PinnedMatrix B = b;
        public readonly PackedPanels Panels = panels;
        public readonly int K = k, N = n, TileColumns = tileColumns, PartColumns = partColumns;
        public readonly bool Streamed = streamed;
        public int ColumnParts => (N + PartColumns - 1) / PartColumns;
    }

    /// <summary>
    /// A <see cref="PackedMatrix"/> as the product's parts see it: a pointer (the panels are pinned), and the column of B at
    /// which this part's columns start. None (default) where a product has no panels or a part must not use them.
    /// </summary>
    internal readonly unsafe struct PackedPanels
    {
        private readonly float* data;
        private readonly int length, rows, columns, paddedColumns, column;
        /// <summary>Columns per tile; 0 for none.</summary>
        public readonly int TileColumns;

        private PackedPanels(float* data, int length, int rows, int columns, int paddedColumns, int tileColumns, int column)
        {
            this.data = data;
            this.length = length;
            this.rows = rows;
            this.columns = columns;
            this.paddedColumns = paddedColumns;
            TileColumns = tileColumns;
            this.column = column;
        }

        /// <summary>Whether there are panels (B was packed ahead).</summary>
        public bool Any => TileColumns != 0;

        /// <summary>Floats of all the panels (of the whole B, whichever columns this part starts from).</summary>
        public int Floats => length;

        public static PackedPanels Of(PackedMatrix? packed) => packed is null ? default : Over(packed.Data, packed.Rows, packed.Columns, packed.TileColumns);

        /// <summary>Panels of B(<paramref name="rows"/>, <paramref name="columns"/>) at <paramref name="data"/>, all of them.</summary>
        public static PackedPanels Over(float* data, int rows, int columns, int tileColumns)
        {
            int length = PanelFloats(rows, columns, tileColumns);
            return new(data, length, rows, columns, length / rows, tileColumns, column: 0);
        }

        /// <summary>The same panels for the columns from <paramref name="first"/> on (a whole number of tiles into this part's).</summary>
        public PackedPanels From(int first) => !Any ? default : new(data, length, rows, columns, paddedColumns, TileColumns, column + first);

        /// <summary>
        /// Whether a part of <paramref name="depth"/> rows, on a path of <paramref name="lanes"/> floats a vector, reading depth blocks
        /// of <paramref name="depthBlock"/>, can read these panels: their tiles are the ones this path makes for the whole B.
        /// </summary>
        public bool Fit(int depth, int lanes, int depthBlock) =>
            TileColumns == (columns <= lanes ? lanes : 2 * lanes) && depthBlock == DepthBlock && depth == rows && column % TileColumns == 0;

        /// <summary>
        /// Whether rows streamed on vectors of <paramref name="width"/> floats, <paramref name="depth"/> deep, read these
        /// panels from column <paramref name="first"/> on (<see cref="StreamFromPanels"/>): tiles of two vectors, B's whole
        /// depth, and whole tiles from there.
        /// </summary>
        public bool Stream(int depth, int width, int first) => TileColumns == 2 * width && depth == rows && ((column + first) & (TileColumns - 1)) == 0;

        /// <summary>The first row of the tile from column <paramref name="first"/> (a tile's first) in the depth block from row <paramref name="pc"/>, <paramref name="kc"/> deep.</summary>
        public float* TileAt(int pc, int kc, int first) => data + (long)pc * paddedColumns + (long)(column + first) * kc;

        /// <summary>The depth block from row <paramref name="pc"/> (<paramref name="kc"/> deep), from this part's column <paramref name="jc"/> on: its tiles from <see cref="TileAt"/> to the panels' end.</summary>
        public Span<float> Block(int pc, int kc, int jc)
        {
            float* start = TileAt(pc, kc, jc);
            return new Span<float>(start, (int)(length - (start - data)));
        }
    }
}
