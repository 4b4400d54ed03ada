using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace ModelGen;

/// <summary>
/// Weights in the safetensors format (8-byte little-endian header length, a JSON header, raw data), tensor
/// names <c>&lt;field&gt;.kernel</c> / <c>&lt;field&gt;.bias</c> in Keras layout. Saving is atomic (write a
/// temporary file, then rename); loading checks everything before it touches the model, so a bad file leaves
/// the weights as they were.
/// </summary>
public static partial class ModelExtensions
{
    public static void SaveWeights(this IModel model, string path)
    {
        var tensors = AllParameters(model);
        var header = new StringBuilder("{\"__metadata__\":{\"format\":\"pt\",\"producer\":\"ModelGen\",\"model\":");
        header.Append(JsonSerializer.Serialize(model.Name)).Append('}');
        long offset = 0;
        foreach (var tensor in tensors)
        {
            long end = offset + 4L * tensor.Length;
            header.Append(',').Append(JsonSerializer.Serialize(tensor.Name))
                .Append(":{\"dtype\":\"F32\",\"shape\":[").Append(string.Join(",", tensor.Shape))
                .Append("],\"data_offsets\":[").Append(offset).Append(',').Append(end).Append("]}");
            offset = end;
        }
        header.Append('}');
        while ((header.Length + 8) % 8 != 0) header.Append(' '); // keep the data 8-byte aligned
        var headerBytes = Encoding.UTF8.GetBytes(header.ToString());

        string fullPath = Path.GetFullPath(path);
        string temporary = fullPath + "." + Guid.NewGuid().ToString("N") + ".tmp";
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
            {
                Span<byte> length = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)headerBytes.Length);
                stream.Write(length);
                stream.Write(headerBytes);
                foreach (var tensor in tensors)
                {
                    if (BitConverter.IsLittleEndian) stream.Write(MemoryMarshal.AsBytes(tensor.Values));
                    else foreach (var value in tensor.Values.ToArray()) { var b = BitConverter.GetBytes(value); Array.Reverse(b); stream.Write(b); }
                }
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, fullPath, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    public static void LoadWeights(this IModel model, string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"{model.Name}: cannot read weights file '{path}': {e.Message}", e);
        }
        if (bytes.Length < 8) throw Invalid(model, path, "the file is shorter than the 8-byte header length");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > (ulong)(bytes.Length - 8)) throw Invalid(model, path, $"the header claims {headerLength} bytes but the file has {bytes.Length - 8} after the length (truncated?)");
        var data = bytes.AsSpan(8 + (int)headerLength);

        JsonDocument document;
        try { document = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength)); }
        catch (JsonException e) { throw Invalid(model, path, "the header is not valid JSON: " + e.Message); }

        // Stage every tensor into a copy; the model's buffer is written only once all of them check out.
        var staged = model.Parameters.ToArray();
        using (document)
        {
            var expected = AllParameters(model);
            var names = new HashSet<string>(expected.Select(p => p.Name));
            foreach (var parameter in expected)
            {
                string layer = parameter.Name.Substring(0, parameter.Name.LastIndexOf('.'));
                string wanted = $"layer '{layer}' expects '{parameter.Name}' as F32 of shape {parameter.ShapeText}";
                if (!document.RootElement.TryGetProperty(parameter.Name, out var info)) throw Invalid(model, path, $"it has no tensor '{parameter.Name}': {wanted}");
                string dtype = info.TryGetProperty("dtype", out var d) ? d.GetString() ?? "" : "";
                var shape = info.TryGetProperty("shape", out var s) ? s.EnumerateArray().Select(x => x.GetInt64()).ToArray() : Array.Empty<long>();
                if (dtype != "F32" || !shape.SequenceEqual(parameter.Shape.Select(x => (long)x)))
                    throw Invalid(model, path, $"tensor '{parameter.Name}' is {dtype} of shape ({string.Join(", ", shape)}), but {wanted}");
                var offsets = info.GetProperty("data_offsets").EnumerateArray().Select(x => x.GetInt64()).ToArray();
                if (offsets.Length != 2 || offsets[1] - offsets[0] != 4L * parameter.Length || offsets[0] < 0 || offsets[1] > data.Length)
                    throw Invalid(model, path, $"tensor '{parameter.Name}' has data offsets [{string.Join(", ", offsets)}] outside the {data.Length} data bytes (truncated?): {wanted}");
                var source = MemoryMarshal.Cast<byte, float>(data.Slice((int)offsets[0], 4 * parameter.Length));
                var target = staged.AsSpan(parameter.Offset, parameter.Length);
                source.CopyTo(target);
                if (!BitConverter.IsLittleEndian)
                {
                    var raw = MemoryMarshal.Cast<float, int>(target);
                    for (int i = 0; i < raw.Length; i++) raw[i] = BinaryPrimitives.ReverseEndianness(raw[i]);
                }
            }
            foreach (var entry in document.RootElement.EnumerateObject())
            {
                if (entry.Name != "__metadata__" && !names.Contains(entry.Name))
                    throw Invalid(model, path, $"it holds a tensor '{entry.Name}' that no layer of {model.Name} has (expected only {string.Join(", ", names)})");
            }
        }
        staged.CopyTo(model.Parameters);
    }

    private static List<Parameter> AllParameters(IModel model) => model.Layers.SelectMany(l => l.Parameters).ToList();

    private static InvalidDataException Invalid(IModel model, string path, string why) =>
        new($"{model.Name}: cannot load weights from '{path}': {why}.");
}
