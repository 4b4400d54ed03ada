using System;
using System.IO;
using ModelGen;
using ModelGen.Samples;
using ModelGen.Training;

// Digits as 8x8x1 images through a small CNN: the same seeded 80/20 split and [0, 1] pixels as the Digits MLP sample.
var (train, test) = LabeledData.Load(Path.Combine(AppContext.BaseDirectory, "data", "digits.csv")).Split(testFraction: 0.2, seed: 42);
(train, test) = (train.Scale(1f / 16), test.Scale(1f / 16));

var model = new DigitsCnn(maxBatchSize: 32, seed: 3);
Console.WriteLine(model.Summary());

var clock = System.Diagnostics.Stopwatch.StartNew();
model.Fit(train.Features, train.Labels, new Adam(learningRate: 0.002f), epochs: 30, batchSize: 32, validationSplit: 0.1, seed: 1,
    callbacks: [new EarlyStopping(monitor: "val_loss", patience: 6, restoreBestWeights: true)]);
Console.WriteLine($"training time: {clock.Elapsed.TotalSeconds:0.00} s");

var result = model.Evaluate(test.Features, test.Labels);
Console.WriteLine($"test loss: {result.Loss:0.0000}");
Console.WriteLine($"test accuracy: {result.Accuracy:0.0000}");

[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
partial class DigitsCnn
{
    [Input(8, 8, 1)] Input image;
    [Conv2D(32, 3, Activation.Relu, Padding = Padding.Same)] Conv2D conv1;
    [MaxPooling2D(2)] MaxPooling2D pool1;
    [Conv2D(64, 3, Activation.Relu, Padding = Padding.Same)] Conv2D conv2;
    [MaxPooling2D(2)] MaxPooling2D pool2;
    [Flatten] Flatten flatten;
    [Dense(64, Activation.Relu)] Dense hidden;
    [Dropout(0.2)] Dropout dropout;
    [Dense(10, Activation.Softmax)] Dense digit;
}
