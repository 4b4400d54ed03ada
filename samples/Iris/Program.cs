using System;
using System.IO;
using ModelGen;
using ModelGen.Samples;
using ModelGen.Training;

// Iris: 150 flowers, 4 measurements, 3 species. A seeded 80/20 split, standardised on the training set.
var (train, test) = LabeledData.Load(Path.Combine(AppContext.BaseDirectory, "data", "iris.csv")).Split(testFraction: 0.2, seed: 42);
var standardize = train.FitStandardizer();
(train, test) = (standardize(train), standardize(test));

var model = new IrisClassifier(maxBatchSize: 16, seed: 7);
Console.WriteLine(model.Summary());

model.Fit(train.Features, train.Labels, new Adam(learningRate: 0.01f), epochs: 100, batchSize: 8, validationSplit: 0.1, seed: 1,
    callbacks: [new EarlyStopping(monitor: "val_loss", patience: 15, restoreBestWeights: true)]);

var result = model.Evaluate(test.Features, test.Labels);
Console.WriteLine($"test loss: {result.Loss:0.0000}");
Console.WriteLine($"test accuracy: {result.Accuracy:0.0000}");

[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
partial class IrisClassifier
{
    [Input(4)] Input measurements;
    [Dense(16, Activation.Relu)] Dense hidden;
    [Dense(3, Activation.Softmax)] Dense species;
}
