using System;
using System.IO;
using ModelGen;
using ModelGen.Samples;
using ModelGen.Training;

// Digits: 1797 handwritten 8x8 images (pixels 0..16), 10 classes. A seeded 80/20 split, pixels scaled to [0, 1].
var (train, test) = LabeledData.Load(Path.Combine(AppContext.BaseDirectory, "data", "digits.csv")).Split(testFraction: 0.2, seed: 42);
(train, test) = (train.Scale(1f / 16), test.Scale(1f / 16));

var model = new DigitsClassifier(maxBatchSize: 32, seed: 3);
Console.WriteLine(model.Summary());

var clock = System.Diagnostics.Stopwatch.StartNew();
model.Fit(train.Features, train.Labels, new Adam(learningRate: 0.002f), epochs: 40, batchSize: 32, validationSplit: 0.1, seed: 1,
    callbacks: [new EarlyStopping(monitor: "val_loss", patience: 8, restoreBestWeights: true)]);
Console.WriteLine($"training time: {clock.Elapsed.TotalSeconds:0.00} s");

var result = model.Evaluate(test.Features, test.Labels);
Console.WriteLine($"test loss: {result.Loss:0.0000}");
Console.WriteLine($"test accuracy: {result.Accuracy:0.0000}");

[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
partial class DigitsClassifier
{
    [Input(64)] Input pixels;
    [Dense(128, Activation.Relu)] Dense hidden;
    [Dropout(0.2)] Dropout dropout;
    [Dense(10, Activation.Softmax)] Dense digit;
}
