using System;
using System.Linq;
using ModelGen;
using ModelGen.Kernels;
using ModelGen.Training;

// [Functional] models on data this sample generates: a two-output regression (the seed's power plant) and an
// autoencoder whose encoder is a sub-model sharing its weights.
var random = new SeededRandom(42);

// --- Power plant: four operating conditions -> energy output and exhaust vacuum, losses weighted 0.7 / 0.3 ---
const int plantSamples = 2000;
var conditions = new float[plantSamples * 4];
var readings = new float[plantSamples * 2]; // per sample: energy, vacuum (targets side by side, in output order)
for (int i = 0; i < plantSamples; i++)
{
    float temperature = random.NextFloat(), pressure = random.NextFloat(), humidity = random.NextFloat(), load = random.NextFloat();
    conditions[i * 4] = temperature; conditions[i * 4 + 1] = pressure; conditions[i * 4 + 2] = humidity; conditions[i * 4 + 3] = load;
    readings[i * 2] = 0.8f * load - 0.4f * temperature * humidity + 0.1f * pressure + 0.05f * (random.NextFloat() - 0.5f);
    readings[i * 2 + 1] = 0.6f * temperature + 0.3f * MathF.Sin(3 * pressure) + 0.05f * (random.NextFloat() - 0.5f);
}
var plant = new PowerPlant(maxBatchSize: 32, seed: 1);
Console.WriteLine(plant.Summary());
plant.Fit(conditions, readings, new Adam(0.003f), epochs: 30, batchSize: 32, validationSplit: 0.2, seed: 1);
var plantScore = plant.Evaluate(conditions.AsSpan(1600 * 4), readings.AsSpan(1600 * 2));
Console.WriteLine($"power plant held-out loss: {plantScore.Loss:0.00000} (energy {plantScore.Metrics["energy_output_loss"]:0.00000}, vacuum {plantScore.Metrics["vacuum_output_loss"]:0.00000})");
Console.WriteLine();

// --- Autoencoder: 28x28 images of two soft blobs, compressed to 32 numbers and back ---
const int images = 1024;
var pixels = new float[images * 784];
for (int n = 0; n < images; n++)
{
    for (int blob = 0; blob < 2; blob++)
    {
        float cx = 4 + 20 * random.NextFloat(), cy = 4 + 20 * random.NextFloat(), radius = 2 + 3 * random.NextFloat();
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++)
            {
                float d2 = ((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (radius * radius);
                pixels[n * 784 + y * 28 + x] = MathF.Max(pixels[n * 784 + y * 28 + x], MathF.Exp(-d2));
            }
    }
}
var autoencoder = new Autoencoder(maxBatchSize: 64, seed: 2);
Console.WriteLine(autoencoder.Summary());
Console.WriteLine($"encoder sub-model: {Autoencoder.EncodeParameterCount:N0} of the autoencoder's {Autoencoder.ParameterCount:N0} weights, shared");
float before = autoencoder.Evaluate(pixels, pixels).Loss;
autoencoder.Fit(pixels, pixels, new Adam(0.001f), epochs: 15, batchSize: 64, seed: 1);
float after = autoencoder.Evaluate(pixels, pixels).Loss;
Console.WriteLine($"reconstruction loss (binary cross-entropy): {before:0.0000} -> {after:0.0000}");

var code = new float[32];
autoencoder.Encode(pixels.AsSpan(0, 784), code);
Console.WriteLine($"first image encoded to 32 numbers: [{string.Join(", ", code.Take(6).Select(v => v.ToString("0.00")))}, ...]");

[Functional(Loss = Loss.MeanSquaredError)]
partial class PowerPlant
{
    [Dense(64, Activation.Relu)] Dense hidden1;
    [Dense(32, Activation.Relu)] Dense hidden2;
    [Dense(1)] Dense energy_output;
    [Dense(1)] Dense vacuum_output;

    [Graph]
    [OutputLoss("energy_output", Loss.MeanSquaredError, Weight = 0.7)]
    [OutputLoss("vacuum_output", Loss.MeanSquaredError, Weight = 0.3)]
    (Tensor, Tensor) Forward([Shape(4)] Tensor conditions)
    {
        var h = hidden2.Apply(hidden1.Apply(conditions));
        return (energy_output.Apply(h), vacuum_output.Apply(h));
    }
}

[Functional(Loss = Loss.BinaryCrossentropy)]
partial class Autoencoder
{
    [Dense(256, Activation.Relu)] Dense encode1;
    [Dense(128, Activation.Relu)] Dense encode2;
    [Dense(32, Activation.Relu)] Dense code;
    [Dense(128, Activation.Relu)] Dense decode1;
    [Dense(256, Activation.Relu)] Dense decode2;
    [Dense(784, Activation.Sigmoid)] Dense reconstruction;

    [Graph]
    Tensor Forward([Shape(784)] Tensor image) => reconstruction.Apply(decode2.Apply(decode1.Apply(Encode(image))));

    /// <summary>The encoder, a sub-model sharing the autoencoder's weights.</summary>
    [Graph]
    Tensor Encode([Shape(784)] Tensor image) => code.Apply(encode2.Apply(encode1.Apply(image)));
}
