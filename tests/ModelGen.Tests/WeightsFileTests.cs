using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace ModelGen.Tests;

public sealed class WeightsFileTests : IDisposable
{
    private readonly string directory = Directory.CreateTempSubdirectory("modelgen-weights-").FullName;

    public void Dispose() => Directory.Delete(directory, recursive: true);

    [Fact]
    public void Save_then_load_round_trips_every_weight_and_leaves_no_temporary_file()
    {
        var source = new MnistClassifier(seed: 1);
        string path = Path.Combine(directory, "mnist.safetensors");
        source.SaveWeights(path);
        source.SaveWeights(path); // overwriting is fine
        Assert.Equal(new[] { "mnist.safetensors" }, Directory.GetFiles(directory).Select(Path.GetFileName));

        var target = new MnistClassifier(seed: 2);
        target.LoadWeights(path);
        Assert.Equal(source.Parameters, target.Parameters);
    }

    [Fact]
    public void The_file_is_safetensors_with_keras_names_and_layouts()
    {
        var model = new ParityClassifier(seed: 1);
        string path = Path.Combine(directory, "parity.safetensors");
        model.SaveWeights(path);
        var bytes = File.ReadAllBytes(path);
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, (8 + headerLength) % 8);
        var header = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, (int)headerLength)).RootElement;
        var kernel = header.GetProperty("layer0.kernel");
        Assert.Equal("F32", kernel.GetProperty("dtype").GetString());
        Assert.Equal(new[] { 6, 8 }, kernel.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()));
        var offsets = kernel.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var firstValues = new float[48];
        Buffer.BlockCopy(bytes, (int)(8 + headerLength) + offsets[0], firstValues, 0, 48 * 4);
        Assert.Equal(model.layer0.Kernel.Values.ToArray(), firstValues);
        Assert.Equal(new[] { "layer0.kernel", "layer0.bias", "layer1.kernel", "layer1.bias", "layer2.kernel", "layer2.bias" },
            header.EnumerateObject().Select(p => p.Name).Where(n => n != "__metadata__"));
        Assert.Equal(8 + headerLength + 4 * ParityClassifier.ParameterCount, bytes.Length);
    }

    [Fact]
    public void A_missing_file_is_a_clear_error_and_changes_nothing()
    {
        var model = new MnistClassifier(seed: 1);
        var weights = model.Parameters.ToArray();
        var error = Assert.Throws<IOException>(() => model.LoadWeights(Path.Combine(directory, "absent.safetensors")));
        Assert.Contains("MnistClassifier", error.Message);
        Assert.Equal(weights, model.Parameters);
    }

    [Fact]
    public void A_truncated_file_is_rejected_and_the_weights_are_unchanged()
    {
        var model = new MnistClassifier(seed: 1);
        string path = Path.Combine(directory, "truncated.safetensors");
        new MnistClassifier(seed: 9).SaveWeights(path);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes.AsSpan(0, bytes.Length - 100).ToArray());
        var weights = model.Parameters.ToArray();
        var error = Assert.Throws<InvalidDataException>(() => model.LoadWeights(path));
        Assert.Contains("MnistClassifier", error.Message);
        Assert.Contains("predictions", error.Message); // the last tensor is the one cut short
        Assert.Contains("truncated", error.Message);
        Assert.Equal(weights, model.Parameters);

        File.WriteAllBytes(path, bytes.AsSpan(0, 4).ToArray());
        Assert.Throws<InvalidDataException>(() => model.LoadWeights(path));
        Assert.Equal(weights, model.Parameters);
    }

    [Fact]
    public void A_file_from_another_architecture_names_the_layer_and_expected_shape()
    {
        string path = Path.Combine(directory, "other.safetensors");
        new ParityClassifier(seed: 1).SaveWeights(path); // layer0.kernel is (6, 8) there
        var model = new ParityOneHot(seed: 1);            // and (5, 7) here
        var weights = model.Parameters.ToArray();
        var error = Assert.Throws<InvalidDataException>(() => model.LoadWeights(path));
        Assert.Contains("ParityOneHot", error.Message);
        Assert.Contains("layer 'layer0'", error.Message);
        Assert.Contains("(5, 7)", error.Message);
        Assert.Equal(weights, model.Parameters);
    }
}
