using System;

namespace ModelGen;

/// <summary>Hooks into <c>Fit</c>, as Keras' callbacks.</summary>
public abstract class Callback
{
    public virtual void OnTrainBegin(IModel model) { }
    /// <summary>Returns true to stop training.</summary>
    public virtual bool OnEpochEnd(IModel model, EpochLogs logs) => false;
    public virtual void OnTrainEnd(IModel model) { }
}

/// <summary>
/// Keras' EarlyStopping: stop when <see cref="Monitor"/> has not improved by more than <see cref="MinDelta"/>
/// for <see cref="Patience"/> epochs; optionally restore the best weights at the end.
/// </summary>
public sealed class EarlyStopping : Callback
{
    private float best;
    private int wait;
    private float[]? bestWeights;

    public EarlyStopping(string monitor = "val_loss", int patience = 0, float minDelta = 0f, bool restoreBestWeights = false)
    {
        Monitor = monitor;
        Patience = patience;
        MinDelta = Math.Abs(minDelta);
        RestoreBestWeights = restoreBestWeights;
    }

    public string Monitor { get; }
    public int Patience { get; }
    public float MinDelta { get; }
    public bool RestoreBestWeights { get; }
    /// <summary>The epoch training stopped at, or -1 if it ran to the end.</summary>
    public int StoppedEpoch { get; private set; } = -1;
    /// <summary>The epoch with the best monitored value.</summary>
    public int BestEpoch { get; private set; }

    /// <summary>Accuracy improves upwards, losses downwards (Keras' mode="auto").</summary>
    private bool Maximise => Monitor.EndsWith("accuracy", StringComparison.Ordinal);

    public override void OnTrainBegin(IModel model)
    {
        best = Maximise ? float.NegativeInfinity : float.PositiveInfinity;
        wait = 0;
        StoppedEpoch = -1;
        BestEpoch = 0;
        bestWeights = null;
    }

    public override bool OnEpochEnd(IModel model, EpochLogs logs)
    {
        float current = logs.Get(Monitor);
        if (float.IsNaN(current)) throw new InvalidOperationException($"EarlyStopping monitors '{Monitor}', which this Fit does not produce (pass validationSplit for val_ metrics).");
        bool improved = Maximise ? current - MinDelta > best : current + MinDelta < best;
        if (improved)
        {
            best = current;
            BestEpoch = logs.Epoch;
            wait = 0;
            if (RestoreBestWeights) bestWeights = model.Parameters.ToArray();
            return false;
        }
        wait++;
        if (wait < Patience) return false;
        StoppedEpoch = logs.Epoch;
        return true;
    }

    public override void OnTrainEnd(IModel model)
    {
        if (RestoreBestWeights && bestWeights is not null) bestWeights.CopyTo(model.Parameters);
    }
}
