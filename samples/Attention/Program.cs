using System;
using ModelGen;
using ModelGen.Kernels;
using ModelGen.Training;

// A small Transformer encoder block on a generated task: sequences of 12 tokens hold one 4 and one 7 among filler tokens;
// is the 4 first? Attention alone has no notion of order, so, as in Keras' examples, a second Embedding encodes each
// position and is added to the token embedding. Self-attention with a residual connection and LayerNormalization, then a
// per-step Dense and a classifier. (The task is easy: the sample shows the wiring of a Transformer block, not its power.)
const int Steps = 12;
var (trainX, trainY) = Generate(6000, seed: 1);
var (testX, testY) = Generate(1000, seed: 2);

var model = new OrderTransformer(maxBatchSize: 64, seed: 0);
Console.WriteLine(model.Summary());
var clock = System.Diagnostics.Stopwatch.StartNew();
model.Fit(trainX, trainY, new Adam(0.003f), epochs: 20, batchSize: 64, validationSplit: 0.1, seed: 1,
    callbacks: [new EarlyStopping(monitor: "val_loss", patience: 4, restoreBestWeights: true)]);
Console.WriteLine($"training time: {clock.Elapsed.TotalSeconds:0.00} s");
var result = model.Evaluate(testX, testY);
Console.WriteLine($"test loss: {result.Loss:0.0000}");
Console.WriteLine($"test accuracy: {result.Accuracy:0.0000}");

// Each row is the tokens, then the positions 0..11 (the model's second input), side by side.
static (float[] X, float[] Y) Generate(int count, int seed)
{
    var random = new SeededRandom(seed);
    var x = new float[count * 2 * Steps];
    var y = new float[count];
    int[] filler = { 1, 2, 3, 5, 6, 8, 9 };
    for (int n = 0; n < count; n++)
    {
        var row = x.AsSpan(n * 2 * Steps, 2 * Steps);
        for (int t = 0; t < Steps; t++)
        {
            row[t] = filler[random.NextInt(filler.Length)];
            row[Steps + t] = t;
        }
        int four = random.NextInt(Steps), seven;
        do seven = random.NextInt(Steps); while (seven == four);
        row[four] = 4;
        row[seven] = 7;
        y[n] = four < seven ? 1 : 0;
    }
    return (x, y);
}

[Functional(Loss = Loss.BinaryCrossentropy)]
partial class OrderTransformer
{
    [Embedding(10, 16)] Embedding tokenEmbedding;
    [Embedding(12, 16)] Embedding positionEmbedding;
    [MultiHeadAttention(2, 8)] MultiHeadAttention attention;
    [LayerNormalization] LayerNormalization norm;
    [Dense(16, Activation.Relu)] Dense perStep;
    [Flatten] Flatten flatten;
    [Dense(1, Activation.Sigmoid)] Dense fourFirst;

    [Graph]
    Tensor Forward([Shape(12)] Tensor tokens, [Shape(12)] Tensor positions)
    {
        var x = Ops.Add(tokenEmbedding.Apply(tokens), positionEmbedding.Apply(positions));
        x = norm.Apply(Ops.Add(x, attention.Apply(x, x)));
        return fourFirst.Apply(flatten.Apply(perStep.Apply(x)));
    }
}
